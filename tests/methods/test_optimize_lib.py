"""The shared optimizing-the-image library: gram_matrix and total_variation (values, Hypothesis
gradient checks in float64, torch oracles), the steps between updates (blur against scipy,
Yosinski's percentile clipping, clipping to the model's pixel range), octaves, and the loop
(independent images in a batch, jitter undone, Ctrl-C keeps the last completed step, L-BFGS
costing one evaluation per step)."""

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

import methods
import minigrad
from methods.lib import regularizers
from methods.lib.objectives import activations, blocks, content_layer, style_layers, texture_layers
from methods.lib.optimize import LBFGS, Adam, GradientStep, Momentum, optimize
from minigrad import models
from tests.methods.tiny_models import tiny_vgg
from tests.strategies import generator, seeds

batches = st.tuples(st.integers(1, 2), st.integers(1, 3), st.integers(1, 5), st.integers(1, 5))


def gram_reference(f):
    n, c, h, w = f.shape
    return np.einsum("nchw,ndhw->ncd", f, f) / (c * h * w)


def tv_reference(x, beta):
    right = np.zeros_like(x)
    down = np.zeros_like(x)
    right[..., :, :-1] = x[..., :, 1:] - x[..., :, :-1]
    down[..., :-1, :] = x[..., 1:, :] - x[..., :-1, :]
    return ((right ** 2 + down ** 2) ** (beta / 2)).reshape(len(x), -1).sum(axis=1)


@given(shape=batches, seed=seeds)
def test_gram_matrix_values_and_gradient(shape, seed):
    f = generator(seed).uniform(-1, 1, shape)
    np.testing.assert_allclose(methods.gram_matrix(f).numpy(), gram_reference(f), rtol=1e-12, atol=1e-14)
    assert minigrad.gradcheck(lambda t: methods.gram_matrix(t), [f])


@given(shape=batches, beta=st.sampled_from([1.0, 1.5, 2.0, 3.0]), seed=seeds)
def test_total_variation_values_and_gradient(shape, beta, seed):
    x = generator(seed).uniform(-1, 1, shape)
    np.testing.assert_allclose(methods.total_variation(x, beta=beta).numpy(), tv_reference(x, beta), rtol=1e-12)
    assert minigrad.gradcheck(lambda t: methods.total_variation(t, beta=beta), [x])


def test_total_variation_of_a_flat_image_has_a_zero_subgradient_for_beta_below_2():
    x = minigrad.tensor(np.ones((1, 1, 3, 3)), requires_grad=True)
    methods.total_variation(x, beta=1.0).sum().backward()
    assert np.array_equal(x.grad, np.zeros((1, 1, 3, 3)))


def test_gram_matrix_and_total_variation_against_torch():
    torch = pytest.importorskip("torch")
    f = np.random.default_rng(0).normal(size=(2, 4, 5, 6))
    t = torch.tensor(f, requires_grad=True)
    flat = t.reshape(2, 4, -1)
    gram = flat @ flat.transpose(1, 2) / (4 * 5 * 6)
    gram.square().sum().backward()
    x = minigrad.tensor(f, requires_grad=True)
    g = methods.gram_matrix(x)
    (g * g).sum().backward()
    np.testing.assert_allclose(g.numpy(), gram.detach().numpy(), rtol=1e-12)
    np.testing.assert_allclose(x.grad, t.grad.numpy(), rtol=1e-10)
    t = torch.tensor(f, requires_grad=True)
    right = torch.nn.functional.pad(t[..., :, 1:] - t[..., :, :-1], (0, 1))
    down = torch.nn.functional.pad(t[..., 1:, :] - t[..., :-1, :], (0, 0, 0, 1))
    (right ** 2 + down ** 2).sum().backward()
    x = minigrad.tensor(f, requires_grad=True)
    methods.total_variation(x).sum().backward()
    np.testing.assert_allclose(x.grad, t.grad.numpy(), rtol=1e-10)


def test_penalties_refuse_bad_input():
    with pytest.raises(ValueError, match=r"total_variation takes a batch \(N, C, H, W\), got shape \(3, 4\)"):
        methods.total_variation(np.zeros((3, 4)))
    with pytest.raises(ValueError, match="beta must be >= 1, got 0.5"):
        methods.total_variation(np.zeros((1, 1, 3, 4)), beta=0.5)
    with pytest.raises(ValueError, match=r"gram_matrix takes feature maps \(N, C, H, W\)"):
        methods.gram_matrix(np.zeros((2, 3)))
    with pytest.raises(ValueError, match="alpha must be >= 1"):
        regularizers.alpha_norm(minigrad.tensor(np.ones((1, 2))), 0.5)


@pytest.mark.parametrize("sigma", [0.3, 0.5, 1.0, 2.5])
def test_gaussian_blur_equals_scipys(sigma):
    ndimage = pytest.importorskip("scipy.ndimage")
    x = np.random.default_rng(0).normal(size=(2, 3, 9, 7))
    expected = ndimage.gaussian_filter1d(ndimage.gaussian_filter1d(x, sigma, axis=2), sigma, axis=3)
    np.testing.assert_allclose(regularizers.gaussian_blur(x, sigma), expected, atol=1e-12)
    assert regularizers.gaussian_blur(x, 0) is x


def test_yosinskis_clipping_zeroes_the_chosen_share_of_pixels():
    rng = np.random.default_rng(0)
    image = rng.normal(size=(3, 3, 10, 10))
    regularizers.zero_small_norm(40)(image, None, 0)
    zero = (image == 0).all(axis=1)
    assert zero.shape == (3, 10, 10) and all(z.sum() == 40 for z in zero)
    image = rng.normal(size=(2, 3, 10, 10))
    gradient = rng.normal(size=image.shape)
    contribution = np.abs((image * gradient).sum(axis=1))
    regularizers.zero_small_contribution(90)(image, gradient, 0)
    for i in range(2):
        kept = ~(image[i] == 0).all(axis=0)
        assert kept.sum() == 10 and contribution[i][kept].min() >= np.percentile(contribution[i], 90)


def test_pixel_bounds_and_scale_come_from_the_preprocessing():
    model = models.load("fashion-vgg")
    low, high = regularizers.pixel_bounds(model)
    pixels = np.array([[[[0], [255]]]], np.uint8)  # one image, 1 x 2 pixels, black and white
    black, white = model.preprocessing.normalize(pixels)[0, 0, 0]
    np.testing.assert_allclose([low.item(), high.item()], [black, white], rtol=1e-6)
    assert regularizers.pixel_scale(model).item() == pytest.approx(255 / (white - black), rel=1e-5)


def test_octaves_end_at_the_image_size():
    sizes = regularizers.octave_sizes((224, 180), 4, 1.4)
    assert sizes[-1] == (224, 180) and sizes[0] == (round(224 / 1.4 ** 3), round(180 / 1.4 ** 3)) and len(sizes) == 4
    assert regularizers.resize(np.ones((1, 2, 5, 5), np.float32), (7, 3)).shape == (1, 2, 7, 3)


def test_default_layers_of_vgg16_are_the_papers():
    with minigrad.nn.init.skip_init():  # the layout alone: no time spent drawing 138M random weights
        model = models.vgg16()
    assert style_layers(model) == ["relu1_1", "relu2_1", "relu3_1", "relu4_1", "relu5_1"]
    assert content_layer(model) == "relu4_2"
    assert texture_layers(model) == ["relu1_1", "pool1", "pool2", "pool3", "pool4"]
    assert [block[-1][0] for block in blocks(model)] == ["pool1", "pool2", "pool3", "pool4", "pool5"]


def test_activations_at_other_sizes_and_with_average_pooling():
    model = tiny_vgg(size=16)
    x = minigrad.tensor(np.random.default_rng(0).normal(size=(1, 3, 24, 20)).astype(np.float32))
    assert activations(model, x, ["pool2"])["pool2"].shape == (1, 8, 6, 5)
    with pytest.raises(ValueError, match="layer fc3 of NamedSequential needs 16x16 images"):
        activations(model, x, ["fc3"])
    small = minigrad.tensor(x.data[:, :, :16, :16])
    average = activations(model, small, ["pool1"], "avg")["pool1"].numpy()
    before = activations(model, small, ["relu1_2"])["relu1_2"].numpy()
    np.testing.assert_allclose(average, before.reshape(1, 4, 8, 2, 8, 2).mean(axis=(3, 5)), rtol=1e-6)


def quadratic(target):
    """Per image ||x - target||^2, and a count of its evaluations with a gradient."""
    calls = []

    def objective(x):
        if x.requires_grad:
            calls.append(1)
        d = (x - target).reshape(len(target), -1)
        return {"distance": (d * d).sum(axis=1)}

    return objective, calls


@pytest.mark.parametrize("rule", [GradientStep(0.1), GradientStep(0.5, "l2"), GradientStep(0.05, "mean"),
                                  Momentum(0.05), Adam(0.1), LBFGS(10)])
def test_every_step_rule_lowers_a_quadratic(rule):
    target = np.random.default_rng(0).normal(size=(2, 1, 4, 4)).astype(np.float32)
    objective, _ = quadratic(target)
    run = optimize(np.zeros_like(target), objective, steps=30, rule=rule)
    assert run.terms["distance"].shape == (31, 2) and run.steps == 30 and not run.interrupted
    assert (run.terms["distance"][-1] < 0.2 * run.terms["distance"][0]).all()


def test_lbfgs_needs_about_one_evaluation_per_step():
    target = np.random.default_rng(0).normal(size=(1, 1, 6, 6)).astype(np.float32)
    objective, calls = quadratic(target)
    run = optimize(np.zeros_like(target), objective, steps=5, rule=LBFGS(10))
    assert run.terms["distance"][-1, 0] < 1e-6 * run.terms["distance"][0, 0]
    assert len(calls) <= 7  # 5 steps; a step whose first trial is accepted costs one evaluation


def test_images_of_a_batch_are_independent_and_jitter_is_undone():
    model = tiny_vgg(size=16)
    rng = np.random.default_rng(1)
    start = rng.normal(size=(3, 3, 16, 16)).astype(np.float32)

    def objective(x):
        return {"unit": -model.extract(x, ["relu2_1"])["relu2_1"][:, 0].reshape(len(x), -1).sum(axis=1)}

    rule = lambda: GradientStep(1.0, "mean")  # noqa: E731
    together = optimize(start, objective, steps=6, rule=rule(), jitter=3, seed=5)
    alone = optimize(start[1:2], objective, steps=6, rule=rule(), jitter=3, seed=5)
    np.testing.assert_allclose(together.image[1:2], alone.image, rtol=1e-5, atol=1e-6)
    still = optimize(start, lambda x: {"zero": (x * 0).reshape(3, -1).sum(axis=1)}, steps=4, rule=rule(), jitter=3)
    np.testing.assert_array_equal(still.image, start)  # shifted and shifted back: nothing moved


def test_ctrl_c_keeps_the_last_completed_step():
    target = np.ones((1, 1, 3, 3), np.float32)
    objective, calls = quadratic(target)

    def interrupted(x):
        if x.requires_grad and len(calls) == 4:  # during the fifth step
            raise KeyboardInterrupt
        return objective(x)

    reference = optimize(np.zeros_like(target), quadratic(target)[0], steps=4, rule=GradientStep(0.1))
    run = optimize(np.zeros_like(target), interrupted, steps=100, rule=GradientStep(0.1), snapshot_every=2)
    assert run.interrupted and run.steps == 4 and len(run.terms["distance"]) == 5
    np.testing.assert_allclose(run.image, reference.image)
    assert [step for step, _ in run.snapshots] == [2, 4]
