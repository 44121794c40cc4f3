"""BagNet (Brendel & Bethge 2019): the shipped fashion-bagnet models, their class-evidence maps and
the script that trains them.

The claims: the evidence maps come from one forward pass and their spatial mean equals the logits
to 1e-5; each map value is the network's answer on one Q x Q patch alone (its units see nothing
else); the accuracies recorded with the shipped weights are what the weights score.
"""

import json
import os

import numpy as np
import pytest

import minigrad
import methods
from methods.data import fashion_sample
from methods.lib.receptive import receptive_field
from minigrad import models, nn
from minigrad.models.bagnet import BAGNETS, PATCH_SIZES, FashionBagNet, fashion_bagnet, model_name, weights_name
from training import loop
from weights import safetensors

WEIGHTS_DIR = os.path.dirname(os.path.abspath(safetensors.__file__))
TINY = {"widths": (4, 4, 4, 4, 4)}
QUICK = {"display": loop.Display(quiet=True), "backend": "reference"}


@pytest.fixture(scope="module")
def sample():
    return fashion_sample()


@pytest.fixture(scope="module")
def shipped():
    return {q: models.load(model_name(q)) for q in PATCH_SIZES}


@pytest.mark.parametrize("q", PATCH_SIZES)
def test_evidence_mean_equals_the_logits(shipped, sample, q):
    model = shipped[q]
    x = model.preprocess(sample[0][:32])
    result = methods.bagnet_evidence(model, x)
    grid = {5: 12, 9: 10, 13: 8}[q]
    assert result.maps.shape == (32, 10, grid, grid)
    with minigrad.no_grad():
        logits = model(minigrad.tensor(x)).numpy()  # a separate forward pass
    # to 1e-5, relative to the logit when it exceeds 1 (float32 arithmetic: logits reach 30)
    np.testing.assert_allclose(result.maps.mean(axis=(2, 3), dtype=np.float64), logits, rtol=1e-5, atol=1e-5)
    assert result.summary["mean_error"] <= 1e-5
    np.testing.assert_array_equal(result.targets, logits.argmax(1))


@pytest.mark.parametrize("q", PATCH_SIZES)
def test_each_evidence_value_is_the_network_on_one_patch_alone(sample, q):
    """The reference repository's definition (every patch through the network on its own) equals
    the one-pass maps: a unit of the feature layer sees exactly its Q x Q patch."""
    minigrad.manual_seed(q)
    model = FashionBagNet(q).eval()
    x = model.preprocess(sample[0][:2])
    result = methods.bagnet_evidence(model, x)
    assert result.field.size == (q, q) and result.field.jump == (2, 2)
    rows, cols = result.maps.shape[2:]
    for r, c in [(0, 0), (rows - 1, cols - 1), (rows // 2, 1)]:
        top, left, bottom, right = result.field.box(r, c)
        with minigrad.no_grad():
            alone = model(minigrad.tensor(np.ascontiguousarray(x[:, :, top:bottom, left:right]))).numpy()
        np.testing.assert_allclose(result.maps[:, :, r, c], alone, rtol=1e-5, atol=1e-5)


def test_patch_sizes_and_grids_from_the_layer_geometry():
    for q, grid in [(5, 12), (9, 10), (13, 8)]:
        model = FashionBagNet(q)
        field = receptive_field(model, "relu5")
        assert field.size == (q, q) and field.start == (0, 0)
        assert [g.output_size for g in model.geometry() if g.name == "relu5"] == [(grid, grid)]


def test_a_users_bag_of_features_network_works_and_others_are_refused(sample):
    minigrad.manual_seed(0)
    net = nn.Sequential(nn.Conv2d(1, 4, 3), nn.ReLU(), nn.Conv2d(4, 6, 3, stride=2), nn.ReLU(),
                        nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Dropout(0.5), nn.Linear(6, 3)).eval()
    x = np.random.default_rng(0).normal(size=(2, 1, 16, 16)).astype(np.float32)
    result = methods.bagnet_evidence(net, x)
    assert result.maps.shape == (2, 3, 6, 6) and result.field.size == (5, 5) and result.field.jump == (2, 2)
    with minigrad.no_grad():
        np.testing.assert_allclose(result.maps.mean(axis=(2, 3)), net(minigrad.tensor(x)).numpy(), atol=1e-5)
    vgg = models.load("fashion-vgg")
    with pytest.raises(ValueError, match="bag-of-local-features.*'fashion-bagnet'.*fashion-vgg ends with.*fc8"):
        methods.bagnet_evidence(vgg, vgg.preprocess(sample[0][:1]))


def test_names_files_and_metadata():
    assert set(BAGNETS) <= set(models.available())
    assert models.load("fashion-bagnet").q == 13 and models.load("fashion-bagnet-q5").q == 5
    path = os.path.join(WEIGHTS_DIR, weights_name(9))
    assert models.load(path).q == 9  # a file of ours loads by its path too
    assert sum(os.path.getsize(os.path.join(WEIGHTS_DIR, weights_name(q))) for q in PATCH_SIZES) < 2_000_000
    with safetensors.SafetensorsFile(path) as f:
        assert f.metadata["arch"] == "fashion-bagnet-q9" and json.loads(f.metadata["config"])["q"] == 9
        assert "python -m training fashion-bagnet-q9" in f.metadata["source"]
    with pytest.raises(ValueError, match="q \\(the patch size\\) must be one of 5, 9, 13, got 7"):
        fashion_bagnet(7)


def test_shipped_accuracy_on_the_sample_and_order_of_patch_sizes(shipped, sample):
    """The 2,000 shipped images are Fashion-MNIST test images: larger patches classify better."""
    accuracy = {q: loop.evaluate(model, *sample)[1] for q, model in shipped.items()}
    assert accuracy[5] < accuracy[9] < accuracy[13], accuracy
    assert accuracy[13] >= 0.88, accuracy


@pytest.mark.slow
@pytest.mark.parametrize("q", PATCH_SIZES)
def test_recorded_test_accuracy_is_what_the_weights_score(shipped, q):
    """On the full Fashion-MNIST test set (Debian's dataset-fashion-mnist): the accuracy written in
    the weights' metadata and log is reproduced, and the largest Q reaches 88%."""
    if not os.path.exists(os.path.join(loop.DEFAULT_DATA, loop.FILES["test"][0])):
        pytest.skip("Fashion-MNIST is not installed (apt-get install dataset-fashion-mnist)")
    data = loop.load_fashion_mnist()
    accuracy = loop.evaluate(shipped[q], *data["test"])[1]
    recorded = float(shipped[q].metadata["test_accuracy"])
    assert accuracy == pytest.approx(recorded, abs=1e-4)
    if q == max(PATCH_SIZES):  # the claim: the largest patches reach 88% on the test set
        assert accuracy >= 0.88
    with open(os.path.join(WEIGHTS_DIR, model_name(q) + ".log"), encoding="utf-8") as log:
        assert f"final test accuracy: {recorded:.4f} on 10000 test images" in log.read()


# ----- the training script -----------------------------------------------------------------------


def _data(sample, n_train=96, n_test=32):
    images, labels = sample
    return {"train": (images[:n_train], labels[:n_train]), "test": (images[-n_test:], labels[-n_test:]), "sha256": {}}


def test_training_a_tiny_bagnet_lowers_the_loss_and_writes_a_loadable_file(sample, tmp_path):
    out = tmp_path / "q9.safetensors"
    summary = loop.train("fashion-bagnet-q9", _data(sample, 256, 64), epochs=3, batch_size=32, lr=1e-2,
                         model_kwargs={"widths": (8, 16, 16, 16, 16)}, output=str(out), log=str(tmp_path / "q9.log"),
                         workers=1, **QUICK)
    assert np.mean(summary["losses"][-6:]) < np.mean(summary["losses"][:6]) - 0.15, summary["losses"]
    loaded = models.load(str(out))
    assert loaded.q == 9 and loaded.config["widths"] == [8, 16, 16, 16, 16]
    np.testing.assert_array_equal(loaded.fc.weight.data, summary["model"].fc.weight.data)
    assert not os.path.exists(str(out) + ".state")  # a finished run leaves nothing to resume


def test_an_interrupted_run_resumes_exactly(sample, tmp_path):
    kwargs = dict(data=_data(sample), epochs=3, batch_size=32, model_kwargs=TINY, workers=1, backend="reference")
    full = loop.train("fashion-bagnet-q5", output=str(tmp_path / "full.safetensors"), display=loop.Display(quiet=True),
                      **kwargs)

    class StopAfterFirstEpoch(loop.Display):
        def line(self, text):
            if text.startswith("epoch 2/3:"):
                raise KeyboardInterrupt

    part = str(tmp_path / "part.safetensors")
    with pytest.raises(KeyboardInterrupt):
        loop.train("fashion-bagnet-q5", output=part, display=StopAfterFirstEpoch(quiet=True), **kwargs)
    assert os.path.exists(part + ".state")
    with pytest.raises(Exception, match="already exists.*--resume"):
        loop.train("fashion-bagnet-q5", output=part, display=loop.Display(quiet=True), **kwargs)
    with pytest.raises(ValueError, match="started with epochs=3, not 4"):
        loop.train("fashion-bagnet-q5", output=part, resume=True, display=loop.Display(quiet=True),
                   **{**kwargs, "epochs": 4})
    resumed = loop.train("fashion-bagnet-q5", output=part, resume=True, display=loop.Display(quiet=True), **kwargs)
    assert [h["epoch"] for h in resumed["history"]] == [1, 2, 3]
    for key, value in full["model"].state_dict().items():
        np.testing.assert_array_equal(resumed["model"].state_dict()[key], value, err_msg=key)
    assert resumed["losses"] == full["losses"]


def test_command_line_trains_each_patch_size(tmp_path, capsys):
    out = tmp_path / "cli.safetensors"
    argv = ["fashion-bagnet-q13", "--sample", "--epochs", "1", "--max-steps", "2", "--batch-size", "16",
            "--workers", "1", "--quiet", "--backend", "reference", "--output", str(out)]
    assert loop.main(argv) == 0
    assert "final test accuracy" in capsys.readouterr().out
    assert loop.main(argv) == 2 and "already exists" in capsys.readouterr().err
    assert loop.main(argv + ["--resume"]) == 2 and "nothing to resume" in capsys.readouterr().err
    with safetensors.SafetensorsFile(out) as f:
        assert f.metadata["arch"] == "fashion-bagnet-q13" and json.loads(f.metadata["recipe"])["lr"] == 0.002
