"""The gallery renders techniques through their CLI entries into one HTML page."""

import os
import re
import subprocess
import sys

import pytest

from methods.__main__ import build_parser
from methods.gallery import render

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def test_gallery_page_links_every_picture_with_its_caption(tmp_path):
    entries = render(build_parser(), str(tmp_path), techniques=["filters", "saliency"], verbose=False)
    assert [e["technique"] for e in entries] == ["filters", "saliency"]
    page = (tmp_path / "index.html").read_text()
    linked = re.findall(r'<img src="([^"]+)"', page)
    assert linked and all((tmp_path / p).is_file() for p in linked)
    for entry in entries:
        assert entry["title"] in page and entry["paper"] in page
        assert all(p in linked for p in entry["pictures"])
    assert "fashion-vgg" in page and re.search(r"in \d+\.\d\d s", page)


def test_gallery_never_replaces_a_page_without_force(tmp_path):
    (tmp_path / "index.html").write_text("mine")
    with pytest.raises(FileExistsError, match="--force"):
        render(build_parser(), str(tmp_path), techniques=["filters"], verbose=False)
    assert (tmp_path / "index.html").read_text() == "mine"


def test_unknown_technique_is_a_clear_cli_error(tmp_path):
    result = subprocess.run([sys.executable, "-m", "methods", "gallery", "--out", str(tmp_path), "--technique", "nope"],
                            capture_output=True, text=True, cwd=ROOT, timeout=300)
    assert result.returncode == 2
    assert "no implemented technique to render among ['nope']" in result.stderr
