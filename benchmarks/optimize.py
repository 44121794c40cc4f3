"""Optimizing the image: our time per step against torch's for the same loss.

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
per step after a warm-up step. Our side and torch's run one after the other, each in its own
process, so that no library's idle thread pool (OpenBLAS's, torch's OpenMP workers) spins
beside the other's work. Models have torchvision's random initialization, seeded (timings do
not depend on the values). Wall-clock and process CPU seconds, with the machine's load average
before and after.
"""

import argparse
import contextlib
import json
import os
import subprocess
import sys
import time

import numpy as np

from . import env

#: The cases, in the order they run.
CASES = ("class-model fashion-vgg", "class-model vgg16", "style vgg16", "lbfgs")
LABELS = {"class-model fashion-vgg": "class-model step fashion-vgg, 10 classes 28x28",
          "class-model vgg16": "class-model step vgg16, 1 class 224x224",
          "style vgg16": "style-transfer step vgg16 224x224 (Adam)"}


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




def load_model(case):
    """The model of a case, the same weights in every process."""
    import minigrad
    from minigrad import models

    minigrad.manual_seed(0)
    name = {"class-model fashion-vgg": "fashion-vgg", "lbfgs": "vgg19-random"}.get(case, "vgg16-random")
    return models.load(name)


def class_model_setting(case):
    """(targets, side) of a class-model case."""
    return (list(range(10)), 28) if case == "class-model fashion-vgg" else ([0], 224)


def ours(case, args):
    """Our side of ``case``: {"wall_s", "cpu_s"} per step (the whole run for lbfgs)."""
    import methods

    model = load_model(case)
    if case.startswith("class-model"):
        targets, _ = class_model_setting(case)
        wall, cpu = per_step(lambda steps: methods.class_model(model, target=targets, steps=steps, start="random",
                                                                snapshot_every=0), args.repeats)
        return {"wall_s": wall, "cpu_s": cpu}
    if case == "style vgg16":
        wall, cpu = per_step(lambda steps: methods.style_transfer(
            model, "sample:astronaut", style="sample:brick", image_size=224, optimizer="adam", init="image",
            steps=steps, snapshot_every=0), args.repeats)
        return {"wall_s": wall, "cpu_s": cpu}
    from methods.lib import optimize

    evaluations, original = [], optimize.LBFGS.step

    def counting(self, evaluate, t):
        return original(self, lambda: evaluations.append(1) or evaluate(), t)

    optimize.LBFGS.step = counting
    start, start_cpu = time.perf_counter(), time.process_time()
    result = methods.style_transfer(model, "sample:astronaut", style="sample:brick", image_size=args.lbfgs_size,
                                    steps=args.lbfgs_steps, snapshot_every=0)
    return {"wall_s": time.perf_counter() - start, "cpu_s": time.process_time() - start_cpu,
            "evaluations": len(evaluations), "final_loss": float(sum(v[-1, 0] for v in result.terms.values()))}


def theirs(case, args):
    """Torch's side of ``case``, as :func:`ours`."""
    import torch

    from methods.lib.regularizers import pixel_bounds, pixel_scale

    model = load_model(case)
    if case.startswith("class-model"):
        targets, side = class_model_setting(case)
        c = model.input_shape[0]
        lr = 25.0 * np.sqrt(c * side * side / (3 * 224 * 224))
        net, _ = torch_twin(model)
        x0 = np.random.default_rng(0).standard_normal((len(targets), c, side, side)).astype(np.float32)
        low, high = pixel_bounds(model)
        timing = env.measure(lambda: torch_class_model_step(net, x0, torch.tensor(targets), lr, 1e-3, 0.5 * side / 224,
                                                            round(16 * side / 224), low, high, 1), args.repeats)
        return {"wall_s": timing["min_s"], "cpu_s": timing["min_cpu_s"]}
    size = 224 if case == "style vgg16" else args.lbfgs_size
    loss, content = style_setup(model, size)
    if case == "style vgg16":
        x = content.clone().requires_grad_(True)
        optimizer = torch.optim.Adam([x], lr=10.0)

        def step():
            optimizer.zero_grad()
            loss(x).backward()
            optimizer.step()

        timing = env.measure(step, args.repeats)
        return {"wall_s": timing["min_s"], "cpu_s": timing["min_cpu_s"]}
    x = (0.001 * torch.randn(content.shape) / torch.from_numpy(pixel_scale(model))).requires_grad_(True)
    optimizer = torch.optim.LBFGS([x], lr=1.0, max_iter=args.lbfgs_steps, max_eval=args.lbfgs_steps * 20,
                                  history_size=100, tolerance_grad=0.0, tolerance_change=0.0,
                                  line_search_fn="strong_wolfe")
    calls = []

    def closure():
        optimizer.zero_grad()
        value = loss(x)
        value.backward()
        calls.append(1)
        return value

    start, start_cpu = time.perf_counter(), time.process_time()
    optimizer.step(closure)
    return {"wall_s": time.perf_counter() - start, "cpu_s": time.process_time() - start_cpu,
            "evaluations": len(calls), "iterations": optimizer.state[x]["n_iter"]}


def limit_threads(threads, with_torch):
    """A context in which every thread pool of this process has ``threads`` threads (0: the
    libraries' defaults)."""
    if not threads:
        return contextlib.nullcontext()
    import numba
    from threadpoolctl import threadpool_limits

    numba.set_num_threads(threads)
    if with_torch:
        import torch

        torch.set_num_threads(threads)
    return threadpool_limits(threads)


def side(name, args):
    """Run one side of every case in this process; the results as JSON on the last line of stdout."""
    results = {}
    with limit_threads(args.threads, name == "torch"):
        for case in args.cases:
            results[case] = (ours if name == "ours" else theirs)(case, args)
            print(f"{name} {case}: {json.dumps(results[case])}", file=sys.stderr, flush=True)
    print(json.dumps(results))


def main(argv=None):
    parser = argparse.ArgumentParser(prog="python -m benchmarks.optimize", description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5, help="timed steps per case (default 5)")
    parser.add_argument("--threads", type=int, default=0, help="threads for BLAS, Numba and torch (0: their defaults); "
                        "with 1, CPU-time ratios do not depend on the machine's load")
    parser.add_argument("--lbfgs-steps", type=int, default=100, help="L-BFGS steps of the style-transfer run")
    parser.add_argument("--lbfgs-size", type=int, default=256, help="image side of the style-transfer run")
    parser.add_argument("--skip-lbfgs", action="store_true", help="leave out the style-transfer run")
    parser.add_argument("--json", default=None, help="also write the results here")
    parser.add_argument("--side", choices=("ours", "torch"), help=argparse.SUPPRESS)  # one side, in a child process
    args = parser.parse_args(argv)
    args.cases = [c for c in CASES if not (args.skip_lbfgs and c == "lbfgs")]
    if args.side:
        return side(args.side, args)
    load = os.getloadavg()
    sides = {}
    for name in ("ours", "torch"):
        command = [sys.executable, "-m", "benchmarks.optimize", "--side", name] + list(argv or sys.argv[1:])
        output = subprocess.run(command, stdout=subprocess.PIPE, check=True, text=True).stdout
        sides[name] = json.loads(output.strip().splitlines()[-1])
    rows = []
    for case in args.cases:
        a, b = sides["ours"][case], sides["torch"][case]
        label = LABELS.get(case) or f"{args.lbfgs_steps} L-BFGS steps of style transfer, vgg19 " \
                                    f"{args.lbfgs_size}x{args.lbfgs_size} (whole run)"
        rows.append({"case": label, "ours": a, "torch": b, "ratio": a["wall_s"] / b["wall_s"],
                     "cpu_ratio": a["cpu_s"] / b["cpu_s"]})
    report = {"machine": env.describe(), "threads": args.threads, "load_before": load, "load_after": os.getloadavg(),
              "results": rows}
    for r in rows:
        print(f"{r['case']:<62} ours {r['ours']['wall_s']:8.3f} s  torch {r['torch']['wall_s']:8.3f} s  "
              f"{r['ratio']:.2f}x   CPU {r['ours']['cpu_s']:.3f} / {r['torch']['cpu_s']:.3f} s  {r['cpu_ratio']:.2f}x")
    print(f"load average before {load[0]:.2f}, after {report['load_after'][0]:.2f}")
    env.write_json(report, args.json)
    return report


if __name__ == "__main__":
    main()
