"""FGSM and PGD step by step, DeepFool's and C&W's perturbation sizes, against the same attacks
written here in torch on a torch twin of the network (float64, the model's normalization in
front), and success rates against torchattacks at equal eps where it is installed."""

import numpy as np
import pytest

import methods
from benchmarks.attacks import torch_twin
from methods.lib.attack import Space
from methods.pgd import random_start_delta
from minigrad.models import Preprocessing
from tests.methods.tiny_models import tiny_vgg

torch = pytest.importorskip("torch")
tF = torch.nn.functional


@pytest.fixture(autouse=True, scope="module")
def one_torch_thread():
    """torch on tiny networks: one thread (on a busy 2-core machine its thread pool costs 100x)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def model():
    """A tiny VGG in float64 with a non-trivial normalization, so the pixel-space path is exercised."""
    net = tiny_vgg(channels=3, size=16, classes=5, seed=3)
    for p in net.parameters():
        p.data = p.data.astype(np.float64)
    net.preprocessing = Preprocessing("RGB", (0.0, 1.0), (0.4, 0.5, 0.6), (0.2, 0.25, 0.3))
    return net


@pytest.fixture(scope="module")
def pixels():
    return np.random.default_rng(5).uniform(0, 1, (4, 3, 16, 16))


def normalized(model, pixels):
    return Space(model, np.float64).inputs(pixels)


def torch_gradient(twin, p, classes):
    t = torch.tensor(p, requires_grad=True)
    tF.cross_entropy(twin(t), torch.tensor(classes), reduction="sum").backward()
    return t.grad.numpy()


def torch_pgd(twin, pixels, classes, eps, alpha, steps, norm, start, targeted=False):
    """Madry et al.'s PGD in torch from the given start, returning every iterate."""
    sign = -1 if targeted else 1
    p, iterates = np.clip(pixels + start, 0, 1), []
    for _ in range(steps):
        g = torch_gradient(twin, p, classes)
        if norm == "linf":
            step = np.sign(g)
        else:
            step = g / (np.sqrt((g.reshape(len(g), -1) ** 2).sum(1)).reshape(-1, 1, 1, 1) + 1e-12)
        delta = p + sign * alpha * step - pixels
        if norm == "linf":
            delta = np.clip(delta, -eps, eps)
        else:
            length = np.sqrt((delta.reshape(len(delta), -1) ** 2).sum(1)).reshape(-1, 1, 1, 1)
            delta = delta * np.minimum(1, eps / np.maximum(length, 1e-12))
        p = np.clip(pixels + delta, 0, 1)
        iterates.append(p)
    return iterates


def test_fgsm_equals_the_torch_step(model, pixels):
    twin = torch_twin(model, torch.float64)
    labels = twin(torch.tensor(pixels)).argmax(1).numpy()
    x = normalized(model, pixels)
    for eps, target in [(0.03, None), (0.1, 2)]:
        result = methods.fgsm(model, x, eps=eps, target=target)
        if target is None:
            expected = np.clip(pixels + eps * np.sign(torch_gradient(twin, pixels, labels)), 0, 1)
        else:
            expected = np.clip(pixels - eps * np.sign(torch_gradient(twin, pixels, [target] * len(pixels))), 0, 1)
        np.testing.assert_allclose(pixels + result.perturbation, expected, atol=1e-12)
        np.testing.assert_allclose(result.adversarial, normalized(model, expected), atol=1e-10)
        assert result.linf.max() <= eps + 1e-12


@pytest.mark.parametrize("norm, eps, random_start, target", [
    ("linf", 0.05, True, None), ("linf", 0.05, False, 3), ("l2", 0.5, True, None), ("l2", 0.5, True, 1)])
def test_pgd_equals_torch_step_by_step(model, pixels, norm, eps, random_start, target):
    twin = torch_twin(model, torch.float64)
    labels = twin(torch.tensor(pixels)).argmax(1).numpy()
    x = normalized(model, pixels)
    alpha = eps / 4
    start = random_start_delta(pixels.shape, eps, norm, 11, pixels.dtype) if random_start else np.zeros_like(pixels)
    goal = labels if target is None else [target] * len(pixels)
    iterates = torch_pgd(twin, pixels, goal, eps, alpha, 5, norm, start, targeted=target is not None)
    for steps, expected in enumerate(iterates, 1):
        result = methods.pgd(model, x, eps=eps, alpha=alpha, steps=steps, norm=norm, random_start=random_start,
                             seed=11, target=target)
        np.testing.assert_allclose(pixels + result.perturbation, expected, atol=1e-10, err_msg=f"step {steps}")
        norms = result.linf if norm == "linf" else result.l2
        assert norms.max() <= eps + 1e-9


def torch_deepfool(twin, pixels, overshoot=0.02, steps=50):
    """Moosavi-Dezfooli et al.'s Algorithm 2 in torch, one image at a time, over every class."""
    out = []
    for image in pixels:
        x0 = torch.tensor(image[None])
        k0 = int(twin(x0).argmax())
        total = torch.zeros_like(x0)
        x = x0.clone()
        for _ in range(steps):
            x.requires_grad_(True)
            f = twin(x)[0]
            if int(f.argmax()) != k0:
                break
            grads = [torch.autograd.grad(f[k], x, retain_graph=True)[0] for k in range(len(f))]
            best = None
            for k in range(len(f)):
                if k == k0:
                    continue
                w = grads[k] - grads[k0]
                fk = (f[k] - f[k0]).detach()
                distance = fk.abs() / w.norm()
                if best is None or distance < best[0]:
                    best = (distance, fk, w)
            _, fk, w = best
            total = total + (fk.abs() + 1e-4) / w.norm() ** 2 * w
            x = torch.clamp(x0 + (1 + overshoot) * total, 0, 1).detach()
        out.append(x.detach().numpy()[0])
    return np.stack(out)


def test_deepfool_is_no_larger_than_a_torch_deepfool(model, pixels):
    twin = torch_twin(model, torch.float64)
    result = methods.deepfool(model, normalized(model, pixels))
    theirs = torch_deepfool(twin, pixels)
    their_l2 = np.sqrt(((theirs - pixels) ** 2).reshape(len(pixels), -1).sum(1))
    assert result.success.all()
    assert (result.l2 <= 1.1 * their_l2 + 1e-9).all(), (result.l2, their_l2)
    assert (twin(torch.tensor(theirs)).argmax(1).numpy() == result.adversarial_class).all()


def torch_carlini_wagner(twin, pixels, labels, c, search_steps, steps, lr):
    """Carlini & Wagner's L2 attack in torch (untargeted, kappa 0, no early abort), per image."""
    out = []
    for image, label in zip(pixels, labels):
        x0 = torch.tensor(image[None])
        w0 = torch.atanh((2 * x0 - 1) * 0.999999)
        lower, upper, const, best, best_l2 = 0.0, 1e10, c, image, np.inf
        for _ in range(search_steps):
            w = w0.clone().requires_grad_(True)
            optimizer = torch.optim.Adam([w], lr=lr)
            hit = False
            for _ in range(steps):
                x = (torch.tanh(w) + 1) / 2
                z = twin(x)[0]
                others = torch.cat([z[:label], z[label + 1:]])
                margin = others.max() - z[label]
                l2 = ((x - x0) ** 2).sum()
                if margin > 0:
                    hit = True
                    if l2.item() < best_l2:
                        best, best_l2 = x.detach().numpy()[0], l2.item()
                loss = l2 + const * torch.clamp(-margin, min=0)
                optimizer.zero_grad()
                loss.backward()
                optimizer.step()
            if hit:
                upper = min(upper, const)
            else:
                lower = max(lower, const)
            const = (lower + upper) / 2 if upper < 1e9 else const * 10
        out.append(best)
    return np.stack(out)


def test_carlini_wagner_is_no_larger_than_a_torch_carlini_wagner(model, pixels):
    twin = torch_twin(model, torch.float64)
    labels = twin(torch.tensor(pixels)).argmax(1).numpy()
    options = dict(c=0.1, search_steps=3, steps=40, lr=0.05)
    result = methods.carlini_wagner(model, normalized(model, pixels), abort_early=False, **options)
    theirs = torch_carlini_wagner(twin, pixels, labels, **options)
    their_l2 = np.sqrt(((theirs - pixels) ** 2).reshape(len(pixels), -1).sum(1))
    assert result.success.all() and (their_l2 > 0).all()
    assert (result.l2 <= 1.1 * their_l2 + 1e-9).all(), (result.l2, their_l2)


@pytest.mark.slow
def test_torchattacks_success_rates_at_equal_eps():
    torchattacks = pytest.importorskip("torchattacks")
    from methods import data
    from minigrad import models

    model = models.load("fashion-vgg")
    images, labels = data.fashion_sample()
    x = model.preprocess(images[:48])
    twin = torch_twin(model)
    pixels, target = torch.tensor(Space(model).pixels(x)), torch.tensor(labels[:48].astype(np.int64))
    label = [int(v) for v in labels[:48]]
    for ours, theirs in [(methods.fgsm(model, x, label=label, eps=0.05), torchattacks.FGSM(twin, eps=0.05)),
                         (methods.pgd(model, x, label=label, eps=0.03, steps=10),
                          torchattacks.PGD(twin, eps=0.03, alpha=2.5 * 0.03 / 10, steps=10))]:
        adversarial = theirs(pixels, target)
        with torch.no_grad():
            rate = float((twin(adversarial).argmax(1) != target).float().mean())
        assert abs(ours.success.mean() - rate) <= 3 / 48, (ours.name, ours.success.mean(), rate)
