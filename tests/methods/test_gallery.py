"""The gallery renders techniques as ``python -m methods NAME`` would, into one HTML page that links
every figure with its title, paper, parameters and time; it refuses an existing gallery without
--force and shows a failing technique's error while the others still render."""

import json
import os
import re
import subprocess
import sys

import pytest

from methods.gallery import render
from methods.lib.options import TECHNIQUES

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def test_gallery_page_links_every_figure_with_its_caption(tmp_path):
    out = tmp_path / "gallery"
    entries = render(str(out), techniques=["saliency", "filters"], verbose=False)
    assert [e["technique"] for e in entries] == ["filters", "saliency"]  # the registry's order
    page = (out / "index.html").read_text()
    linked = re.findall(r'<img src="([^"]+)"', page)
    assert linked and all((out / p).is_file() for p in linked)
    for entry in entries:
        assert "error" not in entry and entry["model"] == "fashion-vgg"
        spec = TECHNIQUES[entry["technique"]]
        assert entry["title"] == spec.title and entry["title"] in page and entry["paper"] in page
        assert entry["figures"] and all(p in linked for p in entry["figures"])
        assert all((out / p).is_file() for p in entry["files"])
        assert f'{entry["seconds"]:.2f} s' in page
        assert f"python -m methods {entry['technique']} --model fashion-vgg" in page
        record = json.loads((out / entry["technique"] / f"{entry['technique']}.json").read_text())
        assert record["params"] == json.loads(json.dumps(entry["params"]))
        assert set(record["params"]) >= set(spec.gallery_values())
    assert {"filters", "index.html", "saliency"} <= set(os.listdir(out))
    assert sorted(p.name for p in out.iterdir() if p.is_dir()) == ["filters", "saliency"]


def test_gallery_never_replaces_a_folder_without_force(tmp_path):
    (tmp_path / "index.html").write_text("mine")
    with pytest.raises(FileExistsError, match="--force"):
        render(str(tmp_path), techniques=["filters"], verbose=False)
    assert os.listdir(tmp_path) == ["index.html"] and (tmp_path / "index.html").read_text() == "mine"
    render(str(tmp_path), techniques=["filters"], force=True, verbose=False)
    assert "minigrad gallery" in (tmp_path / "index.html").read_text()


def test_a_failing_technique_is_shown_and_the_others_render(tmp_path, monkeypatch):
    def broken(model, **values):
        raise ValueError("broken on purpose")

    monkeypatch.setattr(TECHNIQUES["filters"], "function", broken)
    entries = render(str(tmp_path / "g"), techniques=["filters", "activations"], verbose=False)
    assert entries[0]["error"] == "ValueError: broken on purpose" and "error" not in entries[1]
    page = (tmp_path / "g" / "index.html").read_text()
    assert "failed: ValueError: broken on purpose" in page and entries[1]["figures"][0] in page


def test_unknown_technique_is_refused_before_any_work(tmp_path):
    with pytest.raises(ValueError, match="unknown technique\\(s\\) nope; known: filters, activations"):
        render(str(tmp_path / "g"), techniques=["nope"], verbose=False)
    assert not (tmp_path / "g").exists()
    result = subprocess.run([sys.executable, "-m", "methods", "gallery", "--out", str(tmp_path / "g"),
                             "--technique", "nope"], capture_output=True, text=True, cwd=ROOT, timeout=300,
                            check=False)
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert "invalid choice: 'nope'" in result.stderr
    assert not (tmp_path / "g").exists()
