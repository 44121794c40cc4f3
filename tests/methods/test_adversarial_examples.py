"""The lecture notes' adversarial examples (the logistic-regression table, exactly; the distortion
trained on the zero image and added to real images), fooling images for all ten fashion-vgg
classes, and robustness curves; each attack's --help says what eps is measured in."""

import os
import subprocess
import sys

import numpy as np
import pytest

import methods
from methods.__main__ import build_parser
from methods.lib.attack import Space, scores
from methods.lib.datasets import load_dataset
from methods.lib.inputs import probabilities
from minigrad import models
from tests.methods.tiny_models import tiny_vgg

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


@pytest.fixture(scope="module")
def fashion():
    return models.load("fashion-vgg")


def test_the_notes_logistic_example_exactly():
    result = methods.logistic_example()
    np.testing.assert_array_equal(result.x, [2, -1, 3, -2, 2, 2, 1, -4, 5, 1])
    np.testing.assert_array_equal(result.w, [-1, -1, 1, -1, 1, -1, 1, 1, -1, 1])
    np.testing.assert_array_equal(result.adversarial, [1.5, -1.5, 3.5, -2.5, 2.5, 1.5, 1.5, -3.5, 4.5, 1.5])
    assert result.score == -3 and result.adversarial_score == 2
    assert round(result.probability, 4) == 0.0474 and round(result.adversarial_probability, 2) == 0.88
    text = result.text()
    assert "-2 + 1 + 3 + 2 + 2 - 2 + 1 - 4 - 5 + 1 = -3" in text and "= 0.0474" in text
    assert "-1.5 + 1.5 + 3.5 + 2.5 + 2.5 - 1.5 + 1.5 - 3.5 - 4.5 + 1.5 = 2" in text
    assert "from 5% to 88%" in text


def test_the_logistic_example_on_the_command_line(tmp_path):
    out = tmp_path / "logistic"
    run = subprocess.run([sys.executable, "-m", "methods", "adversarial", "--example", "logistic", "--out", str(out)],
                         capture_output=True, text=True, cwd=ROOT, timeout=300, check=False)
    assert run.returncode == 0, run.stderr
    assert "class 1 score before: -2 + 1 + 3 + 2 + 2 - 2 + 1 - 4 - 5 + 1 = -3" in run.stdout
    assert "1/(1+e^(-(-3))) = 0.0474" in run.stdout and "1/(1+e^(-(2))) = 0.8808" in run.stdout
    assert (out / "adversarial.txt").read_text().startswith("Let's fool a binary linear classifier")
    assert (out / "adversarial_table.png").is_file()


@pytest.mark.parametrize("name", ["fgsm", "pgd", "deepfool", "carlini-wagner", "lbfgs", "adversarial", "fooling",
                                  "robustness"])
def test_every_eps_help_says_its_units(name, capsys):
    with pytest.raises(SystemExit):
        build_parser().parse_args([name, "--help"])
    text = " ".join(capsys.readouterr().out.split())
    assert "pixel units on [0, 1] for models with preprocessing" in text and "for a bare nn.Module" in text


def test_distortion_from_the_zero_image_and_its_transfer_rate(fashion):
    dataset = load_dataset(fashion, "sample", limit=60)
    result = methods.adversarial_examples(fashion, dataset, target="Bag", eps=0.2, steps=30)
    space = Space(fashion)
    assert result.summary["target"] == "Bag" and np.abs(result.distortion).max() <= 0.2 + 1e-6
    zero = space.pixels(np.zeros((1, 1, 28, 28), np.float32))[0]
    np.testing.assert_allclose(result.zero, zero)  # the model's input 0: the training mean
    trained = probabilities(scores(fashion, space, space.clip(zero + result.distortion)[None]))[0]
    assert trained.argmax() == 8 and result.summary["zero_after"].startswith("Bag (8)")
    # transfer recomputed from the returned batch: real images plus the distortion
    after = fashion(result.adversarial).numpy().argmax(axis=1)
    np.testing.assert_array_equal(after, result.after)
    eligible = (result.before != 8) & (dataset.labels != 8)
    np.testing.assert_array_equal(eligible, result.eligible)
    assert result.transfer_rate == pytest.approx((after[eligible] == 8).mean())
    delta = space.pixels(result.adversarial) - dataset.images[..., 0][:, None] / 255.0
    assert np.abs(delta).max() <= 0.2 + 1e-5


def test_fooling_images_reach_the_threshold_for_all_ten_fashion_classes(fashion):
    result = methods.fooling_image(fashion, steps=40)
    assert list(result.targets) == list(range(10)) and result.reached.all(), result.confidence
    assert (result.confidence >= 0.996).all() and result.summary["all_reached"]
    confidence = probabilities(fashion(result.image).numpy())[np.arange(10), np.arange(10)]
    np.testing.assert_allclose(confidence, result.confidence, rtol=1e-5)
    pixels = Space(fashion).pixels(result.image)  # in the valid range
    assert pixels.min() >= 0 and pixels.max() <= 1
    assert ((0 <= result.reached_at) & (result.reached_at <= 40)).all()


def test_evolved_fooling_images_improve_on_noise():
    """MAP-Elites on a tiny network: the elites' confidence never falls and ends above the noise's."""
    model = tiny_vgg(channels=1, size=8, classes=3, width=3, seed=1)
    result = methods.fooling_image(model, method="evolution", steps=30, population=16, threshold=0.99)
    for name, values in result.history.items():
        assert np.all(np.diff(values) >= 0), name
    start = np.random.default_rng(0).uniform(0, 1, (3, 1, 8, 8)).astype(np.float32)
    noise = probabilities(model(start).numpy())[np.arange(3), np.arange(3)]
    assert (result.confidence > noise).all()


def test_polynomial_mutation_stays_near_and_in_range():
    rng = np.random.default_rng(0)
    values = np.full(100_000, 0.5)
    mutated = methods.fooling.polynomial_mutation(values, 0.1, rng)
    changed = mutated != values
    assert 0.09 < changed.mean() < 0.11
    step = np.abs(mutated - values)[changed]
    assert step.max() <= 1 and np.median(step) < 0.05  # strength 15: mostly small steps


def test_robustness_curves_against_direct_attacks(fashion):
    dataset = load_dataset(fashion, "sample", limit=16)
    result = methods.robustness(fashion, dataset, max_eps=0.1, points=3, steps=2, batch_size=16)
    assert result.labels_from == "dataset labels" and result.images == 16
    np.testing.assert_allclose(result.eps, [0, 0.05, 0.1])
    x = fashion.preprocessing.normalize(dataset.images)
    clean = (fashion(x).numpy().argmax(1) == dataset.labels).mean()
    assert all(result.accuracy[a][0] == clean for a in ("fgsm", "pgd", "noise"))
    direct = methods.fgsm(fashion, x, label=list(dataset.labels), eps=0.1)
    assert result.accuracy["fgsm"][2] == (direct.adversarial_class == dataset.labels).mean()
    assert result.accuracy["pgd"][2] <= result.accuracy["fgsm"][2] < result.accuracy["noise"][2]
    assert "eps" in result.text().splitlines()[1] and "fgsm" in result.text()
    with pytest.raises(ValueError, match="attacks must be a comma-separated list of fgsm, pgd, noise"):
        methods.robustness(fashion, dataset, attacks="fgsm,cw")
