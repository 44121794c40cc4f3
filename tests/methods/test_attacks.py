"""What the attacks claim, on fashion-vgg's test sample and on tiny networks: every attack stays in
its eps-ball and the valid pixel range; FGSM at 0.1 and PGD at 0.05 flip most images; targeted
attacks reach their target; Szegedy's L-BFGS minimization matches scipy's L-BFGS-B; the space
(pixels versus a bare module's own units) and the report (norms, labels, flip step) are right;
bad input is refused with a message naming the problem."""

import sys

import numpy as np
import pytest

import methods
from methods import data
from methods.lib.attack import EPS_UNITS, Space
from methods.lib.options import TECHNIQUES
from minigrad import models, nn
from tests.methods.tiny_models import tiny_vgg

ATTACKS = ("fgsm", "pgd", "deepfool", "carlini-wagner", "lbfgs")


@pytest.fixture(scope="module")
def fashion():
    return models.load("fashion-vgg")


@pytest.fixture(scope="module")
def sample(fashion):
    images, labels = data.fashion_sample()
    return fashion.preprocess(images[:64]), labels[:64].astype(np.int64)


def pixel_norms(model, result):
    """L-inf of the perturbation recomputed from .adversarial and the original, in pixel units."""
    space = Space(model)
    delta = space.pixels(result.adversarial) - space.pixels(result.original)
    return np.abs(delta).reshape(len(delta), -1).max(axis=1)


def test_space_round_trip_and_units(fashion):
    x = fashion.preprocess(data.fashion_sample()[0][:3])
    space = Space(fashion)
    p = space.pixels(x)
    assert space.box == (0.0, 1.0) and p.min() >= 0 and p.max() <= 1
    np.testing.assert_allclose(p, data.fashion_sample()[0][:3, None] / 255.0, atol=1e-6)
    np.testing.assert_allclose(space.inputs(p), x, atol=1e-6)
    bare = models.as_model(nn.Sequential(nn.Conv2d(3, 2, 3), nn.Flatten()))
    assert Space(bare).box is None and Space(bare).units == "input units"
    assert "pixel units on [0, 1]" in EPS_UNITS and "bare nn.Module" in EPS_UNITS


def test_a_batch_that_is_not_an_image_is_refused(fashion):
    noise = np.random.default_rng(0).normal(0, 10, (1, 1, 28, 28)).astype(np.float32)
    with pytest.raises(ValueError, match=r"not a preprocessed image: de-normalized, its pixels span .* outside"):
        methods.fgsm(fashion, noise)


@pytest.mark.parametrize("name, options", [("fgsm", {"eps": -0.1}), ("pgd", {"norm": "l1"}),
                                           ("pgd", {"steps": 0}), ("deepfool", {"overshoot": -1.0}),
                                           ("carlini-wagner", {"lr": 0.0}), ("lbfgs", {"c": 0.0})])
def test_bad_options_name_the_option(fashion, sample, name, options):
    option = next(iter(options))
    with pytest.raises(ValueError, match=f"^{option} must be"):
        TECHNIQUES[name].function(fashion, sample[0][:1], **options)


def test_unknown_target_names_the_classes(fashion, sample):
    with pytest.raises(ValueError, match="unknown class name 'cat'; the classes are: T-shirt/top, Trouser"):
        methods.fgsm(fashion, sample[0][:1], target="cat")
    with pytest.raises(ValueError, match="target class 12 is out of range"):
        methods.pgd(fashion, sample[0][:1], target=12)


def test_fgsm_at_0_1_flips_most_fashion_test_images(fashion, sample):
    x, labels = sample
    result = methods.fgsm(fashion, x, label=list(labels), eps=0.1)
    correct = result.clean_class == labels
    flipped = (result.adversarial_class != labels)[correct].mean()
    assert flipped > 0.6, flipped
    assert pixel_norms(fashion, result).max() <= 0.1 + 1e-5
    assert (result.flipped_at[result.success] == 1).all() and (result.flipped_at[~result.success] == -1).all()
    np.testing.assert_array_equal(result.success, result.adversarial_class != labels)


@pytest.mark.slow
def test_pgd_at_0_05_flips_most_fashion_test_images(fashion, sample):
    x, labels = sample
    result = methods.pgd(fashion, x[:32], label=list(labels[:32]), eps=0.05)
    correct = result.clean_class == labels[:32]
    flipped = (result.adversarial_class != labels[:32])[correct].mean()
    assert flipped > 0.5, flipped
    assert pixel_norms(fashion, result).max() <= 0.05 + 1e-5
    assert 0 <= result.flipped_at[result.success].min() and result.flipped_at.max() <= 10
    losses = result.history["cross-entropy of the goal class"]
    assert len(losses) == 10 and losses[-1] > losses[0]  # the label's loss is ascended


@pytest.mark.parametrize("name, options", [
    ("pgd", {"eps": 0.1, "steps": 10}),
    ("carlini-wagner", {"c": 1.0, "search_steps": 1, "steps": 30, "lr": 0.05}),
    ("lbfgs", {"search_steps": 1, "max_iter": 15})])
def test_targeted_attacks_reach_their_target(fashion, sample, name, options):
    x = sample[0][:3]
    result = TECHNIQUES[name].function(fashion, x, target="Bag", **options)
    assert (result.adversarial_class == 8).all() and result.success.all()
    assert result.summary["targets"] == ["Bag"] * 3
    space = Space(fashion)
    adversarial = space.pixels(result.adversarial)  # raises if outside [0, 1]
    assert adversarial.min() >= 0 and adversarial.max() <= 1


def test_targeted_fgsm_steps_towards_the_target(fashion, sample):
    """One step is not enough to reach a target every time, but it raises the target's probability."""
    from methods.lib.inputs import probabilities

    x = sample[0][:4]
    result = methods.fgsm(fashion, x, target="Bag", eps=0.1)
    before = probabilities(fashion(x).numpy())[:, 8]
    after = probabilities(fashion(result.adversarial).numpy())[:, 8]
    assert (after > before).all()
    assert result.success.tolist() == (result.adversarial_class == 8).tolist()


def test_untargeted_minimal_attacks_stay_in_the_box_and_flip(fashion, sample):
    x = sample[0][:2]
    minimal = methods.carlini_wagner(fashion, x, c=1.0, search_steps=1, steps=30, lr=0.05)
    for result in (methods.deepfool(fashion, x, candidates=4), minimal):
        assert result.success.all() and (result.adversarial_class != result.clean_class).all()
        p = Space(fashion).pixels(result.adversarial)
        assert p.min() >= 0 and p.max() <= 1
        assert (result.l0 > 0).all() and (result.l2 > 0).all() and (result.linf <= 1).all()


def test_carlini_wagner_confidence_kappa_gives_a_margin(fashion, sample):
    x = sample[0][:2]
    result = methods.carlini_wagner(fashion, x, target=5, c=10.0, search_steps=1, steps=40, lr=0.05, kappa=3.0)
    logits = fashion(result.adversarial).numpy()
    assert result.success.all()
    others = np.delete(logits, 5, axis=1).max(axis=1)
    assert (logits[:, 5] - others > 3.0 - 1e-4).all()


def test_lbfgs_minimization_matches_scipy_l_bfgs_b():
    """One value of c, one image: minigrad.optim.LBFGS with bounds comes within 0.5% of the objective
    value scipy's L-BFGS-B reaches on c ||p - p0||^2 + CE(target) over the box [0, 1]. (Projection
    is not L-BFGS-B: here it stops 0.16% above, at a point whose projected gradient is not zero.)"""
    optimize = pytest.importorskip("scipy.optimize")
    import minigrad
    from minigrad import functional as F

    model = tiny_vgg(channels=1, size=8, classes=4, width=3, seed=2)
    p0 = np.random.default_rng(1).uniform(0, 1, (1, 1, 8, 8)).astype(np.float64)
    for p in model.parameters():
        p.data = p.data.astype(np.float64)
    c, target = 0.5, 3

    def objective(flat):
        p = minigrad.tensor(flat.reshape(p0.shape), requires_grad=True)
        loss = ((p - minigrad.tensor(p0)) ** 2).sum() * c + F.cross_entropy(model(p), np.array([target]), "sum")
        loss.backward()
        return float(loss.item()), p.grad.reshape(-1).astype(np.float64)

    reference = optimize.minimize(objective, p0.reshape(-1), jac=True, method="L-BFGS-B",
                                  bounds=[(0, 1)] * p0.size, options={"maxiter": 200})
    result = methods.lbfgs_attack(model, p0, target=target, c=c, search_steps=1, max_iter=200)
    ours = result.summary["rounds"][0][0]
    assert ours["c"] == c
    assert reference.fun - 1e-6 <= ours["objective"] <= reference.fun * 1.005, (ours["objective"], reference.fun)


def test_lbfgs_searches_c_towards_the_smallest_perturbation(fashion, sample):
    result = methods.lbfgs_attack(fashion, sample[0][:1], search_steps=4, max_iter=10)
    rounds = result.summary["rounds"][0]
    reached = [r["c"] for r in rounds if r["reached"]]
    missed = [r["c"] for r in rounds if not r["reached"]]
    assert reached and missed and max(reached) < min(missed)  # bracketed: success below, failure above
    assert result.success.all() and result.adversarial_class[0] == result.targets[0]
    runner_up = np.argsort(-fashion(sample[0][:1]).numpy()[0])[1]
    assert result.targets[0] == runner_up


def test_a_bare_module_is_attacked_in_its_own_units_without_clipping():
    net = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.ReLU(), nn.Flatten(), nn.Linear(4 * 8 * 8, 3)).eval()
    x = np.random.default_rng(0).normal(0, 3, (2, 3, 8, 8)).astype(np.float32)  # far outside [0, 1]
    result = methods.fgsm(net, x, eps=0.5)
    np.testing.assert_allclose(np.abs(result.adversarial - x), 0.5, atol=1e-6)  # every entry moved, none clipped
    assert result.units == "input units"
    np.testing.assert_allclose(result.perturbation, result.adversarial - x, atol=1e-6)


def test_report_and_pictures(fashion, sample):
    result = methods.fgsm(fashion, sample[0][:2], eps=0.1)
    assert result.adversarial.shape == (2, 1, 28, 28) and result.adversarial.dtype == np.float32
    flat = result.perturbation.reshape(2, -1).astype(np.float64)
    np.testing.assert_allclose(result.l2, np.sqrt((flat ** 2).sum(1)))
    np.testing.assert_array_equal(result.l0, (flat != 0).sum(1))
    assert result.summary["before"][0].startswith("Sneaker (7), p = ")
    figure = result.figures()["0"]
    assert figure.dtype == np.uint8 and figure.min() < figure.max()
    pictures = result.pictures()
    assert pictures["0_adversarial"].shape == (28, 28, 3)
    delta, picture = result.perturbation[0, 0], pictures["0_perturbation"][..., 0]
    bound = np.abs(delta).max()
    assert (picture[delta == bound] == 255).all() and (picture[delta == -bound] == 0).all()
    assert (picture[delta == 0] == 128).all() and "x5, grey = 0, white = +0.1" in result.panels(0)[1].title


def test_pgd_is_deterministic_given_the_seed(fashion, sample):
    x = sample[0][:3]
    a, b = methods.pgd(fashion, x, steps=2, seed=4), methods.pgd(fashion, x, steps=2, seed=4)
    c = methods.pgd(fashion, x, steps=2, seed=5)
    np.testing.assert_array_equal(a.adversarial, b.adversarial)
    assert not np.array_equal(a.adversarial, c.adversarial)


def test_interrupted_attack_returns_what_it_has(fashion, sample, ctrl_c_on_call):
    ctrl_c_on_call(sys.modules["methods.pgd"], "scores_and_gradient", 3)
    result = methods.pgd(fashion, sample[0][:2], eps=0.05, steps=10)
    assert result.summary["interrupted"] and result.summary["steps_run"] == 2
    assert pixel_norms(fashion, result).max() <= 0.05 + 1e-5
