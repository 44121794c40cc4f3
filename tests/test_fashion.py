"""fashion-vgg: the shipped weights, the model's interface, and the script that trains it.

The training tests use the 2,000-image sample shipped in methods/data, never the Debian dataset,
so they run on machines (CI) that do not have it.
"""

import gzip
import json
import os
import time

import numpy as np
import pytest

import minigrad
from methods.data import fashion_sample
from minigrad import models
from minigrad.models import fashion_vgg as fv
from weights import safetensors
from methods.lib.training import augment
from training import loop as wt

WEIGHTS = os.path.join(wt.WEIGHTS_DIR, fv.WEIGHTS_NAME)
TINY = {"blocks": ((8,), (16,)), "hidden": 16}
# The training tests check the script, not the kernels (tests/kernels does): the NumPy reference
# kernels are quickest for these tiny shapes.
QUICK = {"display": wt.Display(quiet=True), "backend": "reference"}


@pytest.fixture(scope="module")
def sample():
    return fashion_sample()


@pytest.fixture(scope="module")
def shipped():
    return fv.fashion_vgg()


# ----- the shipped weights ---------------------------------------------------------------------


def test_shipped_model_reaches_90_percent_on_the_shipped_sample(shipped, sample):
    images, labels = sample
    loss, accuracy = wt.evaluate(shipped, images, labels)
    assert accuracy >= 0.90, accuracy
    assert loss < 0.4


def test_loading_is_memory_mapped_and_takes_milliseconds():
    with safetensors.SafetensorsFile(WEIGHTS) as f:
        array = f["features.conv1_1.weight"]
        base = array
        while getattr(base, "base", None) is not None and not isinstance(base, np.memmap):
            base = base.base
        assert isinstance(base, np.memmap)
        assert os.path.getsize(WEIGHTS) < 4_000_000
    fv.fashion_vgg()  # warm the imports
    times = []
    for _ in range(3):
        start = time.perf_counter()
        fv.fashion_vgg()
        times.append(time.perf_counter() - start)
    assert min(times) < 0.25, times  # typically a few milliseconds


def test_metadata_records_what_the_model_needs(shipped):
    meta = shipped.metadata
    assert meta["arch"] == "fashion-vgg"
    assert json.loads(meta["labels"]) == list(fv.LABELS)
    pre = json.loads(meta["preprocessing"])
    assert pre["mean"] == [fv.MEAN] and pre["std"] == [fv.STD]
    assert float(meta["test_accuracy"]) >= 0.92 and meta["test_images"] == "10000"
    assert "fashion-vgg" in meta["source"] and meta["source"].startswith("trained by minigrad")
    assert json.loads(meta["config"])["blocks"] == [list(b) for b in fv.BLOCKS]


def test_log_reports_the_final_test_accuracy():
    with open(os.path.splitext(WEIGHTS)[0] + ".log", encoding="utf-8") as f:
        text = f.read()
    line = [l for l in text.splitlines() if l.startswith("final test accuracy:")][-1]
    assert float(line.split()[3]) >= 0.92 and "10000 test images" in line
    assert "images/s" in text


def test_models_load_gives_the_shipped_model_frozen_in_eval_mode(shipped):
    from minigrad import models

    model = models.load("fashion-vgg")
    assert not model.training and all(not p.requires_grad for p in model.parameters())
    for key, value in shipped.state_dict().items():
        np.testing.assert_array_equal(model.state_dict()[key], value)


# ----- the model's interface -------------------------------------------------------------------


def test_layer_names_follow_vgg():
    model = fv.FashionVGG()
    assert model.layer_names == ("conv1_1", "relu1_1", "pool1", "conv2_1", "relu2_1", "pool2", "conv3_1",
                                 "relu3_1", "pool3", "flatten", "fc6", "relu6", "drop6", "fc7", "relu7",
                                 "drop7", "fc8")
    assert set(model.state_dict()) == {f"features.conv{b}_1.{p}" for b in (1, 2, 3) for p in ("weight", "bias")} | {
        f"classifier.fc{n}.{p}" for n in (6, 7, 8) for p in ("weight", "bias")}
    assert model.labels[0] == "T-shirt/top" and model.labels[9] == "Ankle boot"


def test_preprocess_and_deprocess_invert_each_other(sample):
    model = fv.FashionVGG()
    images = sample[0][:5]
    x = model.preprocess(images)
    assert x.shape == (5, 1, 28, 28) and x.dtype == np.float32
    assert abs(float(model.preprocess(sample[0]).mean())) < 0.1  # standardized
    rgb = model.deprocess(x)  # every model deprocesses to RGB; grey is replicated
    assert rgb.shape == (5, 28, 28, 3)
    np.testing.assert_array_equal(rgb, np.repeat(images[..., None], 3, axis=3))
    np.testing.assert_array_equal(model.deprocess(minigrad.tensor(x)), rgb)
    np.testing.assert_array_equal(model.preprocess(rgb), x)  # RGB in is made grey again
    assert model.preprocess(images[0]).shape == (1, 1, 28, 28)
    with pytest.warns(models.PreprocessingNote, match="32x32 resized to 28x28"):
        assert model.preprocess(np.zeros((2, 32, 32), np.uint8)).shape == (2, 1, 28, 28)
    with pytest.raises(ValueError, match="deprocess"):
        model.deprocess(np.zeros((2, 3, 28, 28)))


def test_extract_matches_the_forward_and_stops_early(sample):
    minigrad.manual_seed(0)
    model = fv.FashionVGG().eval()
    x = minigrad.tensor(model.preprocess(sample[0][:3]), requires_grad=True)
    acts = model.extract(x, ["relu2_1", "fc8", "pool1"])
    assert acts["pool1"].shape == (3, 32, 14, 14) and acts["relu2_1"].shape == (3, 64, 14, 14)
    np.testing.assert_allclose(acts["fc8"].numpy(), model(x).numpy(), rtol=1e-5, atol=1e-6)
    calls = []
    handle = model.classifier.fc6.register_forward_hook(lambda *a: calls.append(1))
    model.extract(x, "conv3_1")
    handle.remove()
    assert calls == []  # nothing past conv3_1 ran
    acts["relu2_1"][0, 5].sum().backward()
    assert x.grad is not None and np.abs(x.grad).sum() > 0  # activations stay on the graph
    with pytest.raises(ValueError, match="conv5_3.*its layers are: conv1_1"):
        model.extract(x, ["conv5_3"])


# ----- the training script ---------------------------------------------------------------------


def _write_idx(path, array, type_byte=0x08):
    header = bytes([0, 0, type_byte, array.ndim]) + b"".join(int(n).to_bytes(4, "big") for n in array.shape)
    with gzip.open(path, "wb") as f:
        f.write(header + array.astype(">u1").tobytes())


def test_read_idx_round_trip_and_errors(tmp_path, sample):
    images = sample[0][:7]
    _write_idx(tmp_path / "x.gz", images)
    np.testing.assert_array_equal(wt.read_idx(tmp_path / "x.gz"), images)
    with gzip.open(tmp_path / "short.gz", "wb") as f:
        f.write(bytes([0, 0, 8, 3]) + b"".join(n.to_bytes(4, "big") for n in (7, 28, 28)) + b"\0" * 100)
    with pytest.raises(ValueError, match="promises"):
        wt.read_idx(tmp_path / "short.gz")
    with gzip.open(tmp_path / "bad.gz", "wb") as f:
        f.write(b"PK\x03\x04" + b"\0" * 20)
    with pytest.raises(ValueError, match="not an IDX file"):
        wt.read_idx(tmp_path / "bad.gz")


def test_load_fashion_mnist_reads_a_folder_of_idx_files(tmp_path, sample):
    images, labels = sample
    for split, (x, y) in {"train": (images[:20], labels[:20]), "test": (images[20:30], labels[20:30])}.items():
        _write_idx(tmp_path / wt.FILES[split][0], x)
        _write_idx(tmp_path / wt.FILES[split][1], y.astype(np.uint8))
    data = wt.load_fashion_mnist(tmp_path)
    np.testing.assert_array_equal(data["test"][0], images[20:30])
    assert data["train"][1].dtype == np.int64 and len(data["sha256"]) == 4
    with pytest.raises(FileNotFoundError, match="dataset-fashion-mnist"):
        wt.load_fashion_mnist(tmp_path / "nowhere")


def test_augment_flips_and_shifts():
    rng = np.random.default_rng(0)
    images = np.arange(4 * 28 * 28, dtype=np.uint8).reshape(4, 28, 28)
    flipped = augment(images, rng, flip=True)
    for a, b in zip(images, flipped):
        assert np.array_equal(a, b) or np.array_equal(a[:, ::-1], b)
    shifted = augment(images, rng, flip=False, shift=2)
    assert shifted.shape == images.shape and shifted.dtype == np.uint8
    assert augment(images, rng, flip=False).tobytes() == images.tobytes()


def _subset(sample, n_train=384, n_test=128):
    images, labels = sample
    return {"train": (images[:n_train], labels[:n_train]), "test": (images[-n_test:], labels[-n_test:]),
            "sha256": {}}


def test_a_short_training_run_lowers_the_loss(sample, tmp_path):
    out = tmp_path / "tiny.safetensors"
    summary = wt.train(data=_subset(sample, 256, 64), epochs=2, batch_size=32, lr=5e-3,
                       model_kwargs=dict(TINY, hidden=64, dropout=0.0),
                       output=str(out),
                       log=str(tmp_path / "tiny.log"), workers=1, **QUICK)
    losses = summary["losses"]
    assert len(losses) == 16 and all(np.isfinite(losses))
    assert np.mean(losses[-4:]) < np.mean(losses[:4]) - 0.2, losses
    assert summary["history"][-1]["test_accuracy"] > 0.3  # well above chance (0.1)
    model = fv.fashion_vgg(path=str(out))  # the written file loads back into the same network
    np.testing.assert_array_equal(model.features.conv1_1.weight.data, summary["model"].features.conv1_1.weight.data)
    assert "final test accuracy" in (tmp_path / "tiny.log").read_text()


def test_data_parallel_workers_compute_the_same_update(sample):
    """Two worker processes must produce the parameters one process does (no dropout, so the
    only difference is the order of a sum)."""
    kwargs = dict(data=_subset(sample, 64, 32), epochs=1, batch_size=32, model_kwargs=dict(TINY, dropout=0.0),
                  **QUICK)
    one = wt.train(workers=1, **kwargs)["model"].state_dict()
    two = wt.train(workers=2, **kwargs)["model"].state_dict()
    for key in one:
        np.testing.assert_allclose(one[key], two[key], rtol=1e-4, atol=1e-6, err_msg=key)


def test_command_line_on_the_shipped_sample(tmp_path, capsys):
    out = tmp_path / "cli.safetensors"
    argv = ["fashion-vgg", "--sample", "--epochs", "1", "--max-steps", "2", "--batch-size", "16",
            "--workers", "1", "--quiet", "--backend", "reference", "--output", str(out)]
    assert wt.main(argv) == 0
    assert "final test accuracy" in capsys.readouterr().out
    assert out.exists() and (tmp_path / "cli.log").exists()
    assert wt.main(argv) == 2  # refuses to overwrite
    assert "already exists" in capsys.readouterr().err
    with safetensors.SafetensorsFile(out) as f:
        assert f.metadata["arch"] == "fashion-vgg" and json.loads(f.metadata["recipe"])["batch_size"] == 16


def test_unknown_model_and_bad_arguments(sample):
    before = minigrad.get_backend()
    with pytest.raises(ValueError, match="fashion-vgg"):
        wt.train("mnist-lenet", data=_subset(sample))
    with pytest.raises(ValueError, match="batch size"):
        wt.train(data=_subset(sample, 8, 8), batch_size=64, model_kwargs=TINY, **QUICK)
    assert minigrad.get_backend() == before  # a run's backend choice does not leak
