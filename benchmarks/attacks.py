"""Adversarial attacks: time per image of each of ours against torchattacks in the same run.

    python -m benchmarks.attacks [--models fashion-vgg,vgg16-random] [--attacks fgsm,pgd,...] [--batch 16]
                                 [--repeats 3] [--json PATH]

For each model -- the shipped fashion-vgg (a batch of ``--batch`` Fashion-MNIST test images) and
VGG16 with torchvision's random initialization (one 224 x 224 photograph) -- every attack runs
with the same settings here and in torchattacks (when it imports), on a torch twin of the model
with the same weights (:func:`torch_twin`: the model's preprocessing in front, so both attack the
image in pixel units on [0, 1]): FGSM eps 8/255; PGD L-inf eps 8/255, alpha 2/255, 10 steps;
DeepFool 50 steps, overshoot 0.02; C&W L2 one round of 50 Adam steps at c = 1, lr 0.01 (what
torchattacks' CW does: it has no search over c); Szegedy's L-BFGS (ours only: torchattacks has
none) with 1 value of c and 20 iterations. On fashion-vgg each case runs once to warm up (Numba
compiles on first use), then ``--repeats`` times; the minimum is reported
(``benchmarks.env.measure``). On VGG16 each case runs once, after fashion-vgg has compiled the
kernels (``--models vgg16-random`` alone warms up first). torchattacks' DeepFool computes
the gradient of every class (1,000 backward passes per step on VGG16), so it is timed on
fashion-vgg only. Success rates are printed too, as a check that both did the same work.
"""

import argparse
import json
import os
import sys

import numpy as np

import minigrad
from benchmarks import env

ATTACKS = ("fgsm", "pgd", "deepfool", "cw", "lbfgs")


def torch_twin(model, dtype=None):
    """``model`` (a sequential :class:`minigrad.models.Model` of Conv2d, ReLU, MaxPool2d, Linear,
    Flatten, Dropout, AdaptiveAvgPool2d layers) as a torch ``nn.Sequential`` in eval mode with its
    weights copied, taking images in pixel units on [0, 1] (the model's preprocessing as its first
    step). ``dtype``: torch.float64 for oracle tests (default: float32)."""
    import torch
    from torch import nn as tnn

    from minigrad import nn

    dtype = dtype or torch.float32
    pre = model.preprocessing
    lo, hi = pre.range
    scale = torch.tensor((hi - lo) / pre.std.astype(np.float64), dtype=dtype).reshape(1, -1, 1, 1)
    offset = torch.tensor((lo - pre.mean.astype(np.float64)) / pre.std, dtype=dtype).reshape(1, -1, 1, 1)

    class Normalize(tnn.Module):
        def forward(self, p):
            return p * scale + offset

    def weights(layer, module):
        layer.weight.data = torch.tensor(module.weight.numpy(), dtype=dtype)
        layer.bias.data = torch.tensor(module.bias.numpy(), dtype=dtype)
        return layer

    layers = [Normalize()]
    for name, m in model.layers():
        if isinstance(m, nn.Conv2d):
            layers.append(weights(tnn.Conv2d(m.in_channels, m.out_channels, m.kernel_size, m.stride, m.padding,
                                             m.dilation, m.groups), m))
        elif isinstance(m, nn.Linear):
            w = m.weight.numpy()
            layers.append(weights(tnn.Linear(w.shape[1], w.shape[0]), m))
        elif isinstance(m, nn.ReLU):
            layers.append(tnn.ReLU())
        elif isinstance(m, nn.MaxPool2d):
            layers.append(tnn.MaxPool2d(m.kernel_size, m.stride, m.padding))
        elif isinstance(m, nn.AdaptiveAvgPool2d):
            layers.append(tnn.AdaptiveAvgPool2d(m.output_size))
        elif isinstance(m, nn.Flatten):
            layers.append(tnn.Flatten())
        elif isinstance(m, nn.Dropout):
            layers.append(tnn.Identity())
        else:
            raise ValueError(f"torch_twin: no torch counterpart for layer {name} ({type(m).__name__})")
    twin = tnn.Sequential(*layers).to(dtype).eval()
    for p in twin.parameters():
        p.requires_grad_(False)
    return twin


def _inputs(name, batch):
    """(model, x, labels): the model, a preprocessed batch and its labels (the predictions for VGG16)."""
    from methods import data
    from minigrad import models

    minigrad.manual_seed(0)
    model = models.load(name)
    if name == "fashion-vgg":
        images, labels = data.fashion_sample()
        return model, model.preprocess(images[:batch]), labels[:batch].astype(np.int64)
    x = model.preprocess(data.sample_image("chelsea"))
    with minigrad.no_grad():
        return model, x, model(minigrad.tensor(x)).numpy().argmax(axis=1)


def _ours(model, x, labels):
    import methods

    label = [int(v) for v in labels]
    return {
        "fgsm": lambda: methods.fgsm(model, x, label=label, eps=8 / 255),
        "pgd": lambda: methods.pgd(model, x, label=label, eps=8 / 255, alpha=2 / 255, steps=10),
        "deepfool": lambda: methods.deepfool(model, x, label=label, steps=50, overshoot=0.02),
        "cw": lambda: methods.carlini_wagner(model, x, label=label, c=1.0, search_steps=1, steps=50, lr=0.01,
                                             abort_early=False),
        "lbfgs": lambda: methods.lbfgs_attack(model, x, search_steps=1, max_iter=20),
    }


def _theirs(model, x, labels, name):
    try:
        import torch
        import torchattacks
    except ImportError:
        return {}
    from methods.lib.attack import Space

    twin = torch_twin(model)
    images = torch.tensor(Space(model).pixels(x))
    target = torch.tensor(labels)
    attacks = {
        "fgsm": torchattacks.FGSM(twin, eps=8 / 255),
        "pgd": torchattacks.PGD(twin, eps=8 / 255, alpha=2 / 255, steps=10, random_start=True),
        "cw": torchattacks.CW(twin, c=1.0, kappa=0, steps=50, lr=0.01),
    }
    if name == "fashion-vgg":
        attacks["deepfool"] = torchattacks.DeepFool(twin, steps=50, overshoot=0.02)

    def run(attack):
        adversarial = attack(images, target)
        with torch.no_grad():
            return float((twin(adversarial).argmax(1) != target).float().mean())

    return {key: (lambda attack=attack: run(attack)) for key, attack in attacks.items()}


def main(argv=None):
    parser = argparse.ArgumentParser(prog="python -m benchmarks.attacks", description=__doc__.splitlines()[0])
    parser.add_argument("--models", default="fashion-vgg,vgg16-random")
    parser.add_argument("--attacks", default=",".join(ATTACKS))
    parser.add_argument("--batch", type=int, default=16, help="fashion-vgg images per call (VGG16: one image)")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--json", default=None)
    args = parser.parse_args(argv)
    chosen = [a for a in args.attacks.split(",") if a]
    report = {"machine": env.describe(), "load": os.getloadavg(), "models": {}}
    compiled = False
    for name in args.models.split(","):
        model, x, labels = _inputs(name, args.batch)
        ours, theirs = _ours(model, x, labels), _theirs(model, x, labels, name)
        rows = {}
        for attack in chosen:
            repeats, warmup = (args.repeats, 1) if name == "fashion-vgg" or not compiled else (1, 0)
            done = {}
            timing = env.measure(lambda: done.update(result=ours[attack]()), repeats, warmup)
            row = {"ours_s_per_image": timing["min_s"] / len(x), "ours_success": float(done["result"].success.mean())}
            if attack in theirs:
                peer = env.measure(lambda: done.update(theirs=theirs[attack]()), repeats, warmup)
                row.update(torchattacks_s_per_image=peer["min_s"] / len(x), torchattacks_success=done["theirs"],
                           ratio=timing["min_s"] / peer["min_s"])
            rows[attack] = row
            shown = " ".join(f"{k}={v:.4g}" for k, v in row.items())
            print(f"{name:13s} {attack:9s} {shown}", file=sys.stderr)
        report["models"][name] = {"images": len(x), "attacks": rows}
        compiled = True
    report["load_after"] = os.getloadavg()
    print(json.dumps(report, indent=2))
    env.write_json(report, args.json)
    return report


if __name__ == "__main__":
    main()
