"""Sweeps (issue 16): every item saved in its own folder exactly as the technique alone makes it,
over images, units and option values; a 2-process Dask LocalCluster sweep bit for bit the serial
one; a killed worker's items re-run and reported; resume; clear errors; and no Dask anywhere on
the serial paths."""

import json
import os
import signal
import subprocess
import sys
import textwrap
import threading
import time

import numpy as np
import pytest

import minigrad
from methods.lib.options import TECHNIQUES
from methods.lib.runner import run_technique
from methods.sweep import fingerprint, parse_units, sweep
from minigrad import models

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def load_sweep(out):
    with open(os.path.join(out, "sweep.json"), encoding="utf-8") as f:
        return json.load(f)


def files_of(out, row):
    """Every file of an item's folder but the JSON (which records timings), as bytes."""
    folder = os.path.join(out, row["folder"])
    return {name: open(os.path.join(folder, name), "rb").read() for name in sorted(os.listdir(folder))
            if not name.endswith(".json")}


def test_a_sweep_over_images_saves_each_result_as_the_technique_alone_makes_it(tmp_path):
    out = str(tmp_path / "sweep")
    record = sweep("grad-cam", out, "images", limit=3, options={"guided": False})
    assert record["status"] == "done" and record["ok"] == 3 and not record["failed"] and not record["retried"]
    assert [row["folder"] for row in record["items"]] == ["00000_sample_0", "00001_sample_1", "00002_sample_2"]
    minigrad.manual_seed(0)
    model = models.load("fashion-vgg")
    for i, row in enumerate(record["items"]):
        minigrad.manual_seed(0)
        alone, _ = run_technique(TECHNIQUES["grad-cam"], model, {"guided": False}, images=[f"sample:{i}"])
        assert row["fingerprint"] == fingerprint(alone) and row["attempts"] == 1 and row["status"] == "ok"
        with open(os.path.join(out, row["folder"], "grad-cam.json"), encoding="utf-8") as f:
            assert json.load(f)["inputs"] == {"images": [f"sample:{i}"]}
    assert sorted(os.listdir(out)) == ["00000_sample_0", "00001_sample_1", "00002_sample_2", "contact_sheet.png",
                                       "sweep.json"]  # the scratch folder is gone
    from PIL import Image

    sheet = np.asarray(Image.open(os.path.join(out, "contact_sheet.png")))
    assert sheet.ndim == 3 and sheet.std() > 20  # three labelled figures, not a blank
    assert load_sweep(out)["items"] == json.loads(json.dumps(record["items"]))


def test_sweeps_over_units_and_over_an_option(tmp_path):
    record = sweep("guided-backprop", str(tmp_path / "units"), "units", units=[0, 2, 5],
                   options={"layer": "conv2_1"}, images=["sample:4"])
    assert [row["folder"] for row in record["items"]] == ["unit_0000", "unit_0002", "unit_0005"]
    fingerprints = set()
    for row, unit in zip(record["items"], [0, 2, 5]):
        with open(os.path.join(tmp_path, "units", row["folder"], "guided-backprop.json"), encoding="utf-8") as f:
            assert json.load(f)["params"]["unit"] == unit
        fingerprints.add(row["fingerprint"])
    assert len(fingerprints) == 3
    every = sweep("patches", str(tmp_path / "all"), "units", options={"layer": "conv1_1", "k": 2}, limit=30)
    assert len(every["items"]) == 32  # fashion-vgg's conv1_1 has 32 channels
    record = sweep("occlusion", str(tmp_path / "sizes"), "size", values=["7", 14], images=["sample:1"])
    assert [row["folder"] for row in record["items"]] == ["000_size_7", "001_size_14"]
    assert [row["label"] for row in record["items"]] == ["size=7", "size=14"]


def test_resume_runs_only_what_is_missing(tmp_path):
    out = str(tmp_path / "sweep")
    first = sweep("grad-cam", out, "images", limit=3)
    with pytest.raises(FileExistsError, match="--resume"):
        sweep("grad-cam", out, "images", limit=3)
    import shutil

    shutil.rmtree(os.path.join(out, "00001_sample_1"))
    again = sweep("grad-cam", out, "images", limit=3, resume=True)
    assert [row["attempts"] for row in again["items"]] == [0, 1, 0]  # only the missing one ran
    assert [row["fingerprint"] for row in again["items"]] == [row["fingerprint"] for row in first["items"]]
    with pytest.raises(ValueError, match="different sweep"):
        sweep("grad-cam", out, "images", limit=2, resume=True)


@pytest.mark.parametrize("arguments, message", [
    (("patches", "images"), "a sweep over images needs a technique that takes images; patches takes a dataset"),
    (("grad-cam", "units"), "needs a technique with a unit or channel option; grad-cam has target, layer, guided"),
    (("patches", "units"), r"a sweep over all units needs --layer \(or --units\)"),
    (("occlusion", "colour"), "cannot sweep over 'colour': use images, units or an option of occlusion"),
    (("occlusion", "size"), "a sweep over size needs --values"),
    (("warp", "images"), "unknown technique 'warp'"),
])
def test_bad_sweeps_are_refused_before_any_work(tmp_path, arguments, message):
    with pytest.raises(ValueError, match=message):
        sweep(arguments[0], str(tmp_path / "out"), arguments[1], limit=2)
    assert not (tmp_path / "out").exists()


def test_bad_values_units_and_counts(tmp_path):
    with pytest.raises(ValueError, match="size must be an integer >= 1 or None, got 0"):
        sweep("occlusion", str(tmp_path / "a"), "size", values=["7", "0"])
    with pytest.raises(ValueError, match="chunk must be an integer >= 1"):
        sweep("grad-cam", str(tmp_path / "a"), "images", chunk=0)
    assert parse_units("0-3,7") == [0, 1, 2, 3, 7]
    for text in ("3-1", "a", "1,,2", "-4"):
        with pytest.raises(ValueError, match="units must be channel numbers and ranges"):
            parse_units(text)
    assert not (tmp_path / "a").exists()


def test_the_command_line_sweeps_and_reports(tmp_path, capsys):
    from methods.__main__ import main

    out = str(tmp_path / "cli")
    assert main(["sweep", "occlusion", "--over", "stride", "--values", "7,14", "--image", "sample:2",
                 "--out", out]) == 0
    printed = capsys.readouterr().out
    assert "2 of 2 results in" in printed and "contact_sheet.png" in printed
    assert main(["sweep", "occlusion", "--over", "images", "--limit", "1", "--out", out]) == 2
    assert "--resume" in capsys.readouterr().err


# ----- on a cluster ------------------------------------------------------------------------------

SERIAL = [sys.executable, "-m", "methods", "sweep", "smoothgrad", "--over", "images", "--limit", "4",
          "--samples", "6"]


def serial_sweep_like_a_worker(out, workers=2):
    """The serial sweep on the command line, with the threads a local cluster of ``workers`` gives each
    worker and the reference kernels (as the tests run)."""
    from methods.lib.cluster import THREAD_VARIABLES, local_threads

    env = {**os.environ, "MINIGRAD_BACKEND": "reference", **dict.fromkeys(THREAD_VARIABLES, str(local_threads(workers)))}
    subprocess.run(SERIAL + ["--out", out], cwd=ROOT, env=env, check=True, capture_output=True, timeout=300)
    return load_sweep(out)


@pytest.mark.slow
def test_a_two_process_local_cluster_sweep_is_the_serial_sweep_bit_for_bit(tmp_path):
    pytest.importorskip("distributed")
    serial = serial_sweep_like_a_worker(str(tmp_path / "serial"))
    out = str(tmp_path / "cluster")
    cluster = sweep("smoothgrad", out, "images", limit=4, options={"samples": 6}, workers=2, chunk=1)
    assert cluster["ok"] == 4 and serial["ok"] == 4
    assert len({row["worker"] for row in cluster["items"]}) == 2  # both workers ran items
    for a, b in zip(serial["items"], cluster["items"]):
        assert a["fingerprint"] == b["fingerprint"] and a["folder"] == b["folder"]
        assert files_of(str(tmp_path / "serial"), a) == files_of(out, b)  # every picture, byte for byte


@pytest.mark.slow
def test_the_items_of_a_killed_worker_are_run_again(tmp_path):
    pytest.importorskip("distributed")
    out = str(tmp_path / "sweep")
    done = {}
    thread = threading.Thread(target=lambda: done.update(record=sweep(
        "smoothgrad", out, "images", limit=8, options={"samples": 40}, workers=2)))
    thread.start()
    attempts = os.path.join(out, ".sweep", "attempts")
    killed = None
    deadline = time.time() + 240
    while killed is None and time.time() < deadline and thread.is_alive():
        for name in sorted(os.listdir(attempts)) if os.path.isdir(attempts) else []:
            folder, worker = name.split("@")
            if not os.path.exists(os.path.join(out, folder)):  # started, not finished: kill its worker
                os.kill(int(worker.split("-")[-2]), signal.SIGKILL)
                killed = folder
                break
        time.sleep(0.05)
    thread.join(300)
    assert killed is not None, "no item was seen running"
    record = done["record"]
    assert record["ok"] == 8 and not record["failed"] and len({r["fingerprint"] for r in record["items"]}) == 8
    # the item the killed worker was running (or, had it just finished, its next one) ran again
    assert record["retried"] and all(row["attempts"] >= 2 for row in record["items"]
                                     if row["folder"] in record["retried"])


def test_workers_without_dask_say_how_to_install_it_and_serial_paths_never_import_it(tmp_path):
    script = textwrap.dedent(f"""
        import importlib.abc, sys

        class Block(importlib.abc.MetaPathFinder):
            def find_spec(self, name, path=None, target=None):
                if name.split(".")[0] in ("dask", "distributed"):
                    raise ImportError(f"No module named {{name!r}} (blocked by the test)", name=name)
                return None

        sys.meta_path.insert(0, Block())
        import minigrad, methods, methods.sweep, methods.lib.scan, methods.lib.cluster
        from methods.__main__ import main
        assert main(["sweep", "grad-cam", "--over", "images", "--limit", "2", "--out", {str(tmp_path / 'a')!r}]) == 0
        assert main(["neighbours", "--limit", "40", "--k", "2", "--out", {str(tmp_path / 'b')!r}]) == 0
        assert main(["sweep", "grad-cam", "--over", "images", "--limit", "2", "--workers", "2",
                     "--out", {str(tmp_path / 'c')!r}]) == 2
        loaded = sorted(m for m in sys.modules if m.split(".")[0] in ("dask", "distributed"))
        assert not loaded, loaded
        print("ok")
    """)
    env = {**os.environ, "MINIGRAD_BACKEND": "reference", "MINIGRAD_SCAN_CACHE": str(tmp_path / "cache")}
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300, cwd=ROOT,
                            env=env)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip().endswith("ok")
    assert 'pip install "dask[distributed]"' in result.stderr


def test_a_technique_on_an_image_alone_sweeps_without_a_model(tmp_path):
    record = sweep("efros-leung", str(tmp_path / "el"), "images", model=None, images=["sample:brick", "sample:grass"],
                   options={"size": [16, 16], "crop": 24})
    assert record["ok"] == 2 and [row["label"] for row in record["items"]] == ["sample:brick", "sample:grass"]
    assert record["items"][0]["fingerprint"] != record["items"][1]["fingerprint"]


def test_a_failing_item_is_retried_then_reported_and_the_rest_complete(tmp_path, capsys):
    from methods.__main__ import main

    out = str(tmp_path / "sweep")
    missing = str(tmp_path / "missing.png")
    record = sweep("grad-cam", out, "images", images=["sample:0", missing, "sample:1"], retries=1)
    assert record["ok"] == 2 and record["failed"] == ["00001_missing"]
    row = record["items"][1]
    assert row["status"] == "failed" and "no such image file" in row["error"] and row["attempts"] == 2
    assert sorted(os.listdir(out)) == ["00000_sample_0", "00002_sample_1",
                                       "contact_sheet.png", "sweep.json"]
    assert main(["sweep", "grad-cam", "--over", "images", "--image", missing, "--retries", "0",
                 "--out", str(tmp_path / "cli")]) == 1
    assert "error: 00000_missing" in capsys.readouterr().err


@pytest.mark.slow
def test_a_unit_sweep_over_a_folder_scans_it_once_on_the_cluster(tmp_path):
    pytest.importorskip("distributed")
    from benchmarks.scale import make_folder

    folder = make_folder(str(tmp_path / "images"), 24, sizes=((30, 30), (40, 40)), suffix=".png")
    options = {"layer": "pool3", "k": 3}
    cache = tmp_path / "cache"
    record = sweep("patches", str(tmp_path / "cluster"), "units", units=[0, 1, 2, 3], options=options,
                   dataset=folder, cache=str(cache), workers=2)
    assert record["ok"] == 4
    assert len(os.listdir(cache)) == 1  # one scan (every channel's peaks), made by the first item on the workers
    serial = sweep("patches", str(tmp_path / "serial"), "units", units=[0, 1, 2, 3], options=options, dataset=folder,
                   cache=str(cache))
    assert [row["fingerprint"] for row in serial["items"]] == [row["fingerprint"] for row in record["items"]]
