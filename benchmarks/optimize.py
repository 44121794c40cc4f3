"""Optimizing the image: our time per step against torch's for the same loss, in the same run.

    python -m benchmarks.optimize [--repeats N] [--threads T] [--lbfgs-steps 100] [--lbfgs-size 256]
                                  [--skip-lbfgs] [--json PATH]

Cases (each our technique's real step, against torch doing the same work on a twin of the same
network with the same weights, built layer by layer from ``model.layers()``):

* ``class-model fashion-vgg``: ``methods.class_model``'s step for fashion-vgg's ten classes at
  once (batch 10, 28 x 28): jitter, forward, class scores and the L2 penalty, backward to the
  image, the L2-normalized update, the blur every 10 steps, the clamp;
* ``class-model vgg16``: the same for one class of VGG16 at 224 x 224;
* ``style vgg16``: ``methods.style_transfer``'s step at 224 x 224 with Adam (features to relu5_1,
  content loss at relu4_2, Gram losses at relu1_1 ... relu5_1, TV, one evaluation per step);
* ``lbfgs``: ``--lbfgs-steps`` L-BFGS steps of style transfer at ``--lbfgs-size`` on VGG19 (neural-
  style's network), the whole run, against ``torch.optim.LBFGS`` (strong-Wolfe line search) doing
  as many iterations of the same loss; evaluations counted for both.

Our per-step time is the difference between runs of the technique with ``2 + repeats`` and 2
steps, divided by ``repeats`` (set-up and the last evaluation cancel out); torch's is timed
per step after a warm-up step. Models have torchvision's random initialization (timings do not
depend on the values). Wall-clock seconds; note the machine's load (``uptime``) with them.
"""

import argparse
import json
import os
import sys
import time

import numpy as np

from . import env


def torch_twin(model, last=None):
    """The layers of ``model`` (a minigrad Model) up to ``last`` as a torch Sequential in eval mode
    with the same weights, and the names of its layers."""
    import torch
    from torch import nn as tnn

    from minigrad import nn

    layers, names = [], []
    for name, m in model.layers():
        if isinstance(m, nn.Conv2d):
            t = tnn.Conv2d(m.in_channels, m.out_channels, m.kernel_size, m.stride, m.padding, m.dilation, m.groups)
        elif isinstance(m, nn.Linear):
            t = tnn.Linear(m.weight.shape[1], m.weight.shape[0])
        elif isinstance(m, nn.ReLU):
            t = tnn.ReLU()
        elif isinstance(m, nn.MaxPool2d):
            t = tnn.MaxPool2d(m.kernel_size, m.stride, m.padding)
        elif isinstance(m, nn.AdaptiveAvgPool2d):
            t = tnn.AdaptiveAvgPool2d(m.output_size)
        elif isinstance(m, nn.Flatten):
            t = tnn.Flatten()
        elif isinstance(m, nn.Dropout):
            t = tnn.Identity()
        else:
            raise ValueError(f"no torch twin for layer {name} ({type(m).__name__})")
        if isinstance(m, (nn.Conv2d, nn.Linear)):
            t.weight.data = torch.from_numpy(np.array(m.weight.data, np.float32))
            t.bias.data = torch.from_numpy(np.array(m.bias.data, np.float32))
        layers.append(t)
        names.append(name)
        if name == last:
            break
    net = tnn.Sequential(*layers).eval()
    for p in net.parameters():
        p.requires_grad_(False)
    return net, names


def per_step(run, repeats, base=2):
    """(wall, CPU) seconds per step of ``run(steps)``: the time of base + repeats steps minus that
    of base steps, divided by repeats, each the minimum of two runs."""
    def best(steps):
        wall, cpu = [], []
        for _ in range(2):
            start, start_cpu = time.perf_counter(), time.process_time()
            run(steps)
            wall.append(time.perf_counter() - start)
            cpu.append(time.process_time() - start_cpu)
        return np.array([min(wall), min(cpu)])

    run(base)  # warm-up: compilation, caches
    return tuple(np.maximum(best(base + repeats) - best(base), 0.0) / repeats)


def row(case, ours, theirs):
    """One result: our and torch's wall and CPU seconds per step and their ratios."""
    return {"case": case, "ours_s": ours[0], "torch_s": theirs["min_s"], "ratio": ours[0] / theirs["min_s"],
            "ours_cpu_s": ours[1], "torch_cpu_s": theirs["min_cpu_s"], "cpu_ratio": ours[1] / theirs["min_cpu_s"]}


def torch_class_model_step(net, x0, targets, lr, l2_weight, blur_sigma, jitter, low, high, steps):
    """The class-model step in torch, ``steps`` times (returns the image)."""
    import torch
    import torch.nn.functional as tf

    x = torch.from_numpy(x0.copy())
    radius = int(4 * blur_sigma + 0.5)
    taps = torch.exp(-0.5 * (torch.arange(-radius, radius + 1, dtype=torch.float32) / blur_sigma) ** 2)
    taps = taps / taps.sum()
    channels = x.shape[1]
    rng = np.random.default_rng(0)
    low, high = torch.from_numpy(low), torch.from_numpy(high)
    rows = torch.arange(len(targets))
    for t in range(steps):
        dy, dx = (int(s) for s in rng.integers(-jitter, jitter + 1, 2))
        shifted = torch.roll(x, (dy, dx), (2, 3)).requires_grad_(True)
        loss = -net(shifted)[rows, targets].sum() + l2_weight * (shifted * shifted).sum()
        loss.backward()
        g = torch.roll(shifted.grad, (-dy, -dx), (2, 3))
        norms = g.reshape(len(g), -1).norm(dim=1).clamp_min(1e-12).reshape(-1, 1, 1, 1)
        x = x - lr * g / norms
        if t % 10 == 0 and radius > 0:
            for kernel in (taps.reshape(1, 1, 1, -1), taps.reshape(1, 1, -1, 1)):
                pad = (radius, radius, 0, 0) if kernel.shape[3] > 1 else (0, 0, radius, radius)
                x = tf.conv2d(tf.pad(x, pad, mode="reflect"), kernel.repeat(channels, 1, 1, 1), groups=channels)
        x = torch.maximum(torch.minimum(x, high), low)
    return x


def class_model_case(label, model, size, targets, repeats):
    """Our class-model step against torch's on ``model`` at ``size`` for ``targets``."""
    import torch

    import methods
    from methods.lib.regularizers import pixel_bounds

    c = model.input_shape[0]
    side = size
    lr = 25.0 * np.sqrt(c * side * side / (3 * 224 * 224))
    sigma, jitter = 0.5 * side / 224, round(16 * side / 224)
    ours = per_step(lambda steps: methods.class_model(model, target=targets, steps=steps, start="random",
                                                      snapshot_every=0), repeats)
    net, _ = torch_twin(model)
    x0 = np.random.default_rng(0).standard_normal((len(targets), c, side, side)).astype(np.float32)
    low, high = pixel_bounds(model)
    step = lambda: torch_class_model_step(net, x0, torch.tensor(targets), lr, 1e-3, sigma, jitter, low, high, 1)  # noqa: E731
    return row(label, ours, env.measure(step, repeats))


def gram(features):
    n, c = features.shape[:2]
    flat = features.reshape(n, c, -1)
    return flat @ flat.transpose(1, 2) / (c * flat.shape[2])


def torch_style_loss(net, names, content_layer, style_layers, content_target, style_targets, levels, unit, x):
    """neural-style's loss as methods.style_transfer computes it, in torch."""
    content = style = 0.0
    h = x
    wanted = set(style_layers) | {content_layer}
    for name, layer in zip(names, net):
        h = layer(h)
        if name == content_layer:
            content = content + ((h - content_target) ** 2).mean() * (5.0 * unit ** 2)
        if name in style_layers:
            style = style + ((gram(h) - style_targets[name]) ** 2).mean() * (100.0 * unit ** 4)
        wanted.discard(name)
        if not wanted:
            break
    p = x * levels
    right = torch_pad_difference(p, 3)
    down = torch_pad_difference(p, 2)
    return content + style + (right ** 2 + down ** 2).sum() * (1e-3 / 2)


def torch_pad_difference(p, axis):
    import torch

    d = torch.diff(p, dim=axis)
    shape = list(p.shape)
    shape[axis] = 1
    return torch.cat([d, torch.zeros(shape, dtype=p.dtype)], dim=axis)


def style_setup(model, size):
    """The style-transfer problem at ``size`` in torch: (net, names, loss function of x, start image)."""
    import torch

    from methods.lib.datasets import load_picture
    from methods.lib.objectives import content_layer, style_layers
    from methods.lib.regularizers import pixel_scale

    content_name, style_names = content_layer(model), style_layers(model)
    net, names = torch_twin(model, last=style_names[-1])
    normalize = model.preprocessing.normalize
    content = torch.from_numpy(normalize(load_picture(model, "sample:astronaut", longest=size)[None]))
    style = torch.from_numpy(normalize(load_picture(model, "sample:brick", longest=size)[None]))
    levels = torch.from_numpy(pixel_scale(model))
    unit = float(levels.mean())
    with torch.no_grad():
        h, targets, content_target = style, {}, None
        for name, layer in zip(names, net):
            h = layer(h)
            if name in style_names:
                targets[name] = gram(h)
        h = content
        for name, layer in zip(names, net):
            h = layer(h)
            if name == content_name:
                content_target = h
                break
    loss = lambda x: torch_style_loss(net, names, content_name, style_names, content_target, targets,  # noqa: E731
                                      levels, unit, x)
    return loss, content


def style_case(model, repeats):
    """Our style-transfer step (Adam) against torch's at 224 x 224 on ``model``."""
    import torch

    import methods

    ours = per_step(lambda steps: methods.style_transfer(model, "sample:astronaut", style="sample:brick",
                                                         image_size=224, optimizer="adam", init="image",
                                                         steps=steps, snapshot_every=0), repeats)
    loss, content = style_setup(model, 224)
    x = content.clone().requires_grad_(True)
    optimizer = torch.optim.Adam([x], lr=10.0)

    def step():
        optimizer.zero_grad()
        loss(x).backward()
        optimizer.step()

    return row("style-transfer step vgg16 224x224 (Adam)", ours, env.measure(step, repeats))


def lbfgs_case(model, steps, size):
    """``steps`` L-BFGS steps of style transfer at ``size``: our technique against torch.optim.LBFGS."""
    import torch

    import methods
    from methods.lib import optimize
    from methods.lib.regularizers import pixel_scale

    evaluations = []
    original = optimize.LBFGS.step

    def counting(self, evaluate, t):
        return original(self, lambda: evaluations.append(1) or evaluate(), t)

    optimize.LBFGS.step = counting
    try:
        start, start_cpu = time.perf_counter(), time.process_time()
        result = methods.style_transfer(model, "sample:astronaut", style="sample:brick", image_size=size,
                                        steps=steps, snapshot_every=0)
        ours = (time.perf_counter() - start, time.process_time() - start_cpu)
    finally:
        optimize.LBFGS.step = original
    loss, content = style_setup(model, size)
    x = 0.001 * torch.randn(content.shape) / torch.from_numpy(pixel_scale(model))
    x.requires_grad_(True)
    optimizer = torch.optim.LBFGS([x], lr=1.0, max_iter=steps, max_eval=steps * 20, history_size=100,
                                  tolerance_grad=0.0, tolerance_change=0.0, line_search_fn="strong_wolfe")
    calls = []

    def closure():
        optimizer.zero_grad()
        value = loss(x)
        value.backward()
        calls.append(1)
        return value

    start, start_cpu = time.perf_counter(), time.process_time()
    optimizer.step(closure)
    theirs = {"min_s": time.perf_counter() - start, "min_cpu_s": time.process_time() - start_cpu}
    return {**row(f"{steps} L-BFGS steps of style transfer, {model.describe()} {size}x{size}", ours, theirs),
            "ours_evaluations": len(evaluations),
            "torch_evaluations": len(calls), "torch_iterations": optimizer.state[x]["n_iter"],
            "ours_final_loss": float(sum(v[-1, 0] for v in result.terms.values()))}


def main(argv=None):
    parser = argparse.ArgumentParser(prog="python -m benchmarks.optimize", description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5, help="timed steps per case (default 5)")
    parser.add_argument("--threads", type=int, default=0, help="threads for BLAS, Numba and torch (0: their defaults); "
                        "with 1, CPU-time ratios do not depend on the machine's load")
    parser.add_argument("--lbfgs-steps", type=int, default=100, help="L-BFGS steps of the style-transfer run")
    parser.add_argument("--lbfgs-size", type=int, default=256, help="image side of the style-transfer run")
    parser.add_argument("--skip-lbfgs", action="store_true", help="leave out the style-transfer run")
    parser.add_argument("--json", default=None, help="also write the results here")
    args = parser.parse_args(argv)
    import torch

    import minigrad
    from minigrad import models

    if args.threads:
        import numba
        from threadpoolctl import threadpool_limits

        limits = threadpool_limits(args.threads)  # noqa: F841  (kept for the whole run)
        numba.set_num_threads(args.threads)
        torch.set_num_threads(args.threads)
    load = os.getloadavg()
    rows = []
    fashion = models.load("fashion-vgg")
    rows.append(class_model_case("class-model step fashion-vgg, 10 classes 28x28", fashion, 28, list(range(10)),
                                 args.repeats))
    print(json.dumps(rows[-1]), file=sys.stderr)
    minigrad.manual_seed(0)
    vgg16 = models.load("vgg16-random")
    rows.append(class_model_case("class-model step vgg16, 1 class 224x224", vgg16, 224, [0], args.repeats))
    print(json.dumps(rows[-1]), file=sys.stderr)
    rows.append(style_case(vgg16, args.repeats))
    print(json.dumps(rows[-1]), file=sys.stderr)
    del vgg16
    if not args.skip_lbfgs:
        rows.append(lbfgs_case(models.load("vgg19-random"), args.lbfgs_steps, args.lbfgs_size))
        print(json.dumps(rows[-1]), file=sys.stderr)
    report = {"machine": env.describe(), "load_before": load, "load_after": os.getloadavg(),
              "backend": minigrad.get_backend(), "results": rows}
    for r in rows:
        cpu = f"  CPU {r['ours_cpu_s']:.3f} / {r['torch_cpu_s']:.3f} s {r['cpu_ratio']:.2f}x" if "cpu_ratio" in r else ""
        print(f"{r['case']:<58} ours {r['ours_s']:9.3f} s  torch {r['torch_s']:9.3f} s  {r['ratio']:.2f}x{cpu}")
    print(f"load average before {load[0]:.2f}, after {report['load_after'][0]:.2f}")
    if args.json:
        with open(args.json, "w") as handle:
            json.dump(report, handle, indent=2)
    return report


if __name__ == "__main__":
    main()
