"""Grad-CAM, Guided Grad-CAM, SmoothGrad and integrated gradients against independent torch
implementations on a torch twin of the same network, and the properties the papers claim."""

import numpy as np
import pytest

import methods
from tests.methods.tiny_models import tiny_vgg

torch = pytest.importorskip("torch")

from tests.torch_relu import RuleReLU, relu_rule  # noqa: E402 (needs torch)


@pytest.fixture(scope="module")
def model():
    return tiny_vgg(channels=3, size=16, classes=5, seed=4)


@pytest.fixture(scope="module")
def x():
    return np.random.default_rng(7).normal(size=(2, 3, 16, 16)).astype(np.float32)


def twin(model):
    """The tiny VGG as a torch function returning (logits, {name: activation}); its ReLUs
    backpropagate by the rule of ``relu_rule``."""
    params = {name: torch.tensor(module.weight.numpy()) for name, module in model.layers()
              if hasattr(module, "weight")}
    biases = {name: torch.tensor(module.bias.numpy()) for name, module in model.layers() if hasattr(module, "bias")}
    relu = RuleReLU.apply

    def forward(t):
        acts = {}
        for name, _ in model.layers():
            if name.startswith("conv"):
                t = torch.nn.functional.conv2d(t, params[name], biases[name], padding=1)
            elif name.startswith("relu"):
                t = relu(t)
            elif name.startswith("pool"):
                t = torch.nn.functional.max_pool2d(t, 2)
            elif name == "flatten":
                t = t.flatten(1)
            else:
                t = torch.nn.functional.linear(t, params[name], biases[name])
            acts[name] = t
        return t, acts

    return forward


def torch_input_gradient(forward, x, targets):
    t = torch.tensor(x, requires_grad=True)
    logits, _ = forward(t)
    logits[torch.arange(len(targets)), torch.tensor(targets)].sum().backward()
    return t.grad.numpy()


def test_grad_cam_equals_an_independent_torch_implementation(model, x):
    result = methods.grad_cam(model, x, layer="relu2_1", target=[1, 3])
    t = torch.tensor(x, requires_grad=True)
    logits, acts = twin(model)(t)
    a = acts["relu2_1"]
    a.retain_grad()
    logits[torch.arange(2), torch.tensor([1, 3])].sum().backward()
    alpha = a.grad.mean(dim=(2, 3), keepdim=True)
    cam = torch.relu((alpha * a).sum(1)).detach().numpy()
    assert result.maps.shape == (2, 8, 8)  # the layer's own resolution
    np.testing.assert_allclose(result.maps, cam, rtol=1e-4, atol=1e-6)
    np.testing.assert_allclose(result.weights, alpha[:, :, 0, 0].numpy(), rtol=1e-4, atol=1e-7)
    up = torch.nn.functional.interpolate(torch.tensor(cam)[:, None], size=(16, 16), mode="bilinear",
                                         align_corners=False).numpy()
    with relu_rule("guided"):
        guided = torch_input_gradient(twin(model), x, [1, 3]) * up
    np.testing.assert_allclose(result.guided, guided, rtol=1e-4, atol=1e-6)


def test_grad_cam_default_layer_is_the_last_convolution_output(model, x):
    assert methods.grad_cam(model, x, guided=False).params["layer"] == "relu2_1"


def test_grad_cam_peaks_on_the_object_the_class_responds_to():
    """Channel 0 sees bright things, channel 1 dark ones, and class 0 counts bright things: on an
    image with one bright object the class-0 map lies on the object and is zero elsewhere, while
    class 1 (which counts dark background) gets a map on the background."""
    from minigrad import nn
    from tests.methods.tiny_models import NamedSequential

    conv = nn.Conv2d(1, 2, 1)
    conv.weight.data[...] = np.array([1.0, -1.0], np.float32).reshape(2, 1, 1, 1)
    conv.bias.data[...] = 0
    fc = nn.Linear(2 * 8 * 8, 2)
    fc.weight.data[...] = np.kron(np.eye(2, dtype=np.float32), np.ones((1, 64), np.float32))
    fc.bias.data[...] = 0
    m = NamedSequential([("conv1", conv), ("relu1", nn.ReLU()), ("flatten", nn.Flatten()), ("fc", fc)], 1, 8)
    x = -np.abs(np.random.default_rng(0).normal(size=(1, 1, 8, 8))).astype(np.float32)
    x[..., 1:4, 2:5] = 2.0
    obj = np.zeros((8, 8), bool)
    obj[1:4, 2:5] = True
    cam = methods.grad_cam(m, x, target=0, guided=False).maps[0]
    assert cam[obj].min() > 0 and cam[~obj].max() == 0
    cam = methods.grad_cam(m, x, target=1, guided=False).maps[0]
    assert cam[obj].max() == 0 and cam[~obj].min() > 0


def test_smoothgrad_equals_torch_with_the_same_noise(model, x):
    result = methods.smoothgrad(model, x, target=2, samples=6, noise=0.2, batch_size=4, seed=3)
    rng = np.random.default_rng(3)
    forward = twin(model)
    want = []
    for image in x:
        sigma = 0.2 * float(image.max() - image.min())
        total = np.zeros(image.shape)
        for start in range(0, 6, 4):
            count = min(4, 6 - start)
            noisy = image[None] + rng.normal(0.0, sigma, (count,) + image.shape).astype(np.float32)
            total += torch_input_gradient(forward, noisy, [2] * count).sum(0)
        want.append(total / 6)
    np.testing.assert_allclose(result.maps, np.stack(want), rtol=1e-4, atol=1e-6)


def test_smoothgrad_with_no_noise_is_the_gradient(model, x):
    result = methods.smoothgrad(model, x, target=1, samples=3, noise=0.0)
    np.testing.assert_allclose(result.maps, torch_input_gradient(twin(model), x, [1, 1]), rtol=1e-4, atol=1e-6)


def test_integrated_gradients_equal_torch_and_are_complete(model, x):
    steps = 64
    result = methods.integrated_gradients(model, x, target=[0, 4], steps=steps, baseline="zeros")
    forward = twin(model)
    want = np.zeros_like(x, dtype=np.float64)
    for a in (np.arange(steps) + 0.5) / steps:
        want += torch_input_gradient(forward, (a * x).astype(np.float32), [0, 4])
    want *= x / steps
    np.testing.assert_allclose(result.maps, want, rtol=1e-3, atol=1e-6)
    scale = np.abs(result.summary["score_difference"]).max()
    assert result.summary["completeness_error"].max() < 0.02 * scale
    coarse = methods.integrated_gradients(model, x, target=[0, 4], steps=2, baseline="zeros")
    assert coarse.summary["completeness_error"].max() > result.summary["completeness_error"].max()


def test_integrated_gradients_black_baseline_goes_through_the_model_preprocessing():
    from minigrad import models

    model = models.load("fashion-vgg")
    x = model.preprocess(np.full((28, 28), 200, np.uint8))
    result = methods.integrated_gradients(model, x, steps=8)
    black = model.preprocess(np.zeros((28, 28), np.uint8))
    # attributions are proportional to (x - x'): zero where the image equals the black baseline
    assert not np.allclose(black, 0) and np.abs(result.maps).sum() > 0
    x2 = x.copy()
    x2[..., :5, :] = black[..., :5, :]
    assert np.abs(methods.integrated_gradients(model, x2, steps=8).maps[..., :5, :]).max() == 0
