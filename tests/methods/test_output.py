"""Output safety (issue 12 item 6): an output folder holding files is refused before any work
unless --force, which replaces earlier results; nothing is written through a symbolic link (a link
planted at a result's name is replaced as a link, never followed; a dangling one creates nothing;
an output folder that is a link is refused); file names stay inside the folder; JSON is valid."""

import json
import os
import subprocess
import sys

import numpy as np
import pytest

from methods.__main__ import main
from methods.lib import output
from methods.lib.result import Result

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
SALIENCY = ["saliency", "--model", "fashion-vgg", "--image", "sample:0", "--no-segment"]


def run(capsys, argv):
    code = main(argv)
    out, err = capsys.readouterr()
    return code, out, err


def snapshot(folder):
    """{name: (is link, link target or file bytes)} of a folder's entries."""
    out = {}
    for name in sorted(os.listdir(folder)):
        path = os.path.join(folder, name)
        if os.path.islink(path):
            out[name] = ("link", os.readlink(path))
        else:
            with open(path, "rb") as handle:
                out[name] = ("file", handle.read())
    return out


def test_a_folder_holding_files_is_refused_before_any_work(tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    (out / "mine.txt").write_text("keep me")
    result = subprocess.run([sys.executable, "-m", "methods", *SALIENCY, "--out", str(out)], capture_output=True,
                            text=True, cwd=ROOT, timeout=120, check=False)
    assert result.returncode == 2 and result.stdout == "" and "Traceback" not in result.stderr
    assert "already holds files" in result.stderr and "--force" in result.stderr
    assert snapshot(out) == {"mine.txt": ("file", b"keep me")}


def test_the_folder_is_checked_before_the_model_is_loaded(tmp_path, capsys):
    out = tmp_path / "out"
    out.mkdir()
    (out / "mine.txt").write_text("keep me")
    code, _, err = run(capsys, ["saliency", "--model", "no-such-model", "--out", str(out)])
    assert code == 2 and "already holds files" in err and "unknown model" not in err


def test_a_failed_run_leaves_no_folder_behind(tmp_path, capsys):
    out = tmp_path / "new" / "out"
    code, _, err = run(capsys, ["grad-cam", "--layer", "conv9", "--out", str(out)])
    assert code == 2 and "unknown layer 'conv9'" in err
    assert not (tmp_path / "new").exists()


def test_force_replaces_earlier_results(tmp_path, capsys):
    out = tmp_path / "out"
    code, _, err = run(capsys, SALIENCY + ["--out", str(out)])
    assert code == 0, err
    first = snapshot(out)
    assert json.loads(first["saliency.json"][1])["params"]["target"] is None
    code, _, err = run(capsys, SALIENCY + ["--out", str(out), "--target", "3"])
    assert code == 2 and snapshot(out) == first
    code, _, err = run(capsys, SALIENCY + ["--out", str(out), "--target", "3", "--force"])
    assert code == 0, err
    second = snapshot(out)
    assert set(second) == set(first) and all(kind == "file" for kind, _ in second.values())
    assert json.loads(first["saliency.json"][1])["targets"] != [3]
    assert json.loads(second["saliency.json"][1])["params"]["target"] == 3
    assert json.loads(second["saliency.json"][1])["targets"] == [3]
    assert second["saliency_0_map.png"] != first["saliency_0_map.png"]  # the new map, not the old one


@pytest.fixture
def planted(tmp_path):
    """An output folder whose saliency.json is a link to a file outside, and saliency_0.png a
    dangling link to a file that does not exist yet."""
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "precious.txt").write_text("precious")
    out = tmp_path / "out"
    out.mkdir()
    os.symlink(outside / "precious.txt", out / "saliency.json")
    os.symlink(outside / "created.png", out / "saliency_0.png")
    return out, outside


def test_planted_links_refused_without_force(planted, capsys):
    out, outside = planted
    before = snapshot(out)
    code, printed, err = run(capsys, SALIENCY + ["--out", str(out)])
    assert code == 2 and printed == "" and "already holds files" in err
    assert snapshot(out) == before
    assert (outside / "precious.txt").read_text() == "precious" and not (outside / "created.png").exists()


def test_planted_links_are_replaced_never_followed_with_force(planted, capsys):
    out, outside = planted
    code, _, err = run(capsys, SALIENCY + ["--out", str(out), "--force"])
    assert code == 0, err
    assert (outside / "precious.txt").read_text() == "precious"  # the link's target is unchanged
    assert not (outside / "created.png").exists()  # the dangling link created nothing
    assert sorted(os.listdir(outside)) == ["precious.txt"]
    for name in ("saliency.json", "saliency_0.png"):
        assert not os.path.islink(out / name) and (out / name).is_file()
    assert json.loads((out / "saliency.json").read_text())["technique"] == "saliency"
    assert (out / "saliency_0.png").read_bytes().startswith(b"\x89PNG")


def test_an_output_folder_that_is_a_link_is_refused(tmp_path, capsys):
    real = tmp_path / "real"
    real.mkdir()
    link = tmp_path / "link"
    os.symlink(real, link)
    for extra in ([], ["--force"]):
        code, printed, err = run(capsys, SALIENCY + ["--out", str(link)] + extra)
        assert code == 2 and printed == "" and "is a symbolic link" in err
    assert os.listdir(real) == []
    dangling = tmp_path / "dangling"
    os.symlink(tmp_path / "nowhere", dangling)
    code, _, err = run(capsys, SALIENCY + ["--out", str(dangling), "--force"])
    assert code == 2 and "is a symbolic link" in err and not (tmp_path / "nowhere").exists()


def test_an_output_path_that_is_a_file_is_refused(tmp_path, capsys):
    (tmp_path / "file").write_text("x")
    code, _, err = run(capsys, SALIENCY + ["--out", str(tmp_path / "file"), "--force"])
    assert code == 2 and "exists and is not a folder" in err and (tmp_path / "file").read_text() == "x"


def test_gallery_into_a_folder_holding_files_is_refused_without_force(tmp_path, capsys):
    (tmp_path / "mine.txt").write_text("keep me")
    code, _, err = run(capsys, ["gallery", "--out", str(tmp_path), "--technique", "filters"])
    assert code == 2 and "already holds files" in err and "--force" in err
    assert os.listdir(tmp_path) == ["mine.txt"]
    code, _, err = run(capsys, ["gallery", "--out", str(tmp_path), "--technique", "filters", "--force"])
    assert code == 0, err
    assert {"index.html", "filters", "mine.txt"} <= set(os.listdir(tmp_path))


def test_write_file_stays_in_its_folder_and_replaces_only_with_force(tmp_path):
    folder = tmp_path / "out"
    output.prepare_folder(folder)
    path = output.write_file(folder, "../escape.png", b"data")
    assert os.path.dirname(path) == str(folder) and not (tmp_path / "escape.png").exists()
    assert output.safe_name("../escape.png") == "_escape.png" and output.safe_name("a b/c:d.png") == "a_b_c_d.png"
    assert output.safe_name("..") == "result"
    with pytest.raises(ValueError, match="already exists; refusing to overwrite"):
        output.write_file(folder, "_escape.png", b"other")
    assert (folder / "_escape.png").read_bytes() == b"data"
    output.write_file(folder, "_escape.png", b"other", force=True)
    assert (folder / "_escape.png").read_bytes() == b"other"
    (folder / "sub").mkdir()
    with pytest.raises(ValueError, match="is a folder; cannot write a result there"):
        output.write_file(folder, "sub", b"x", force=True)
    with pytest.raises(FileExistsError, match="already holds files"):
        output.prepare_folder(folder)
    assert output.prepare_folder(folder, force=True) == str(folder)


def test_json_is_valid_without_nan():
    value = {"nan": float("nan"), "inf": np.float32("inf"), "array": np.array([1.5, np.nan]),
             "big": np.zeros((200, 100)), "int": np.int64(3), "tuple": (1, "a"), 4: None, "object": object}
    clean = output.jsonable(value)
    assert clean["nan"] is None and clean["inf"] is None and clean["array"] == [1.5, None]
    assert clean["big"] == "array of shape [200, 100]" and clean["int"] == 3 and type(clean["int"]) is int
    assert clean["tuple"] == [1, "a"] and clean["4"] is None and clean["object"] == str(object)
    json.dumps(clean, allow_nan=False)


def test_result_json_records_params_inputs_and_summary(tmp_path):
    result = Result(loss=float("nan"), values=np.array([0.25, np.inf]))
    result.technique, result.params, result.inputs = "demo", {"k": 3}, {"images": ["sample:0"]}
    paths = result.save(tmp_path / "out")
    assert [os.path.basename(p) for p in paths] == ["demo.json"]
    text = (tmp_path / "out" / "demo.json").read_text()
    assert "NaN" not in text and "Infinity" not in text
    assert json.loads(text) == {"technique": "demo", "params": {"k": 3}, "inputs": {"images": ["sample:0"]},
                                "loss": None, "values": [0.25, None]}
    path = output.write_json(tmp_path / "out", "other.json", {"x": float("nan")})
    with open(path, encoding="utf-8") as handle:
        assert json.loads(handle.read()) == {"x": None}
