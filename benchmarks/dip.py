"""Deep Image Prior: one optimization step of the skip network, minigrad against torch.

    python -m benchmarks.dip                       # 128x128, the paper's network (128 channels, 5 scales)
    python -m benchmarks.dip --size 512 --repeats 3   # the paper's F16 size
    python -m benchmarks.dip --width 16 --threads 1 --json dip.json

A step is what ``methods.deep_image_prior`` does per iteration: the forward pass of
``methods.deep_image_prior.SkipNet`` on the code z, the squared error to the target, the
backward pass to every weight, an Adam update. torch runs the same network with the same
weights (:func:`torch_skip_net`), in training mode, on the same z and target. Each runner runs
in its own subprocess (no thread pool of one library left spinning while the other is timed),
after warm-up steps that also let Numba compile; both report the minimum and the median of the
timed steps and their CPU time. The ratio is ours over torch's (below 1: we are faster); on a
machine shared with other work, the CPU-time ratio of single-threaded runs (``--threads 1``) is
the steadier figure.

``--ops`` also times, forward and backward, each kind of operation the network uses at the
shapes of its largest scale (128 channels at the full size): the 3x3 convolution, batch norm in
training mode, LeakyReLU, bilinear x2 upsampling, reflection padding, concatenation; the ratio
per op shows which one makes a step slow.
"""

import argparse
import json
import os
import subprocess
import sys

import numpy as np

from . import env

RUNNERS = ("minigrad", "torch")


def torch_skip_net(net):
    """A torch module computing what the minigrad ``SkipNet`` ``net`` computes, with its weights
    (the same state_dict keys), in training mode."""
    import torch

    class Unit(torch.nn.Module):
        def __init__(self, unit):
            super().__init__()
            self.pad = unit.pad
            self.conv = torch.nn.Conv2d(unit.conv.in_channels, unit.conv.out_channels, unit.conv.kernel_size,
                                        unit.conv.stride)
            self.bn = torch.nn.BatchNorm2d(unit.bn.num_features)

        def forward(self, x):
            if self.pad:
                x = torch.nn.functional.pad(x, (self.pad,) * 4, mode="reflect")
            return torch.nn.functional.leaky_relu(self.bn(self.conv(x)), 0.2)

    class Scale(torch.nn.Module):
        def __init__(self, scale):
            super().__init__()
            self.skips = scale.skips
            self.down = torch.nn.Sequential(*[Unit(u) for u in scale.down])
            if scale.skips:
                self.skip = Unit(scale.skip)
            self.merge = torch.nn.BatchNorm2d(scale.merge.num_features)
            self.up = torch.nn.Sequential(*[Unit(u) for u in scale.up])

    class Net(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.scales = torch.nn.ModuleList([Scale(s) for s in net.scales])
            self.head = torch.nn.Conv2d(net.head.in_channels, net.head.out_channels, 1)

        def forward(self, z):
            return torch.sigmoid(self.head(self._scale(0, z)))

        def _scale(self, i, x):
            scale = self.scales[i]
            deeper = scale.down(x)
            if i + 1 < len(self.scales):
                deeper = self._scale(i + 1, deeper)
            deeper = torch.nn.functional.interpolate(deeper, scale_factor=2, mode="bilinear", align_corners=False)
            if scale.skips:
                deeper = torch.cat([scale.skip(x), deeper], dim=1)
            return scale.up(scale.merge(deeper))

    twin = Net()
    twin.load_state_dict({k: torch.from_numpy(np.array(v)) for k, v in net.state_dict().items()})
    return twin.train()


def _problem(size, width, scales, seed=0):
    """The minigrad network, its code z and a target image, as ``methods.deep_image_prior`` makes them."""
    import minigrad
    from methods.deep_image_prior import SkipNet

    minigrad.manual_seed(seed)
    net = SkipNet(32, 3, width, 4, scales)
    rng = np.random.default_rng(seed)
    side = net.size_for(size)
    z = (rng.random((1, 32, side, side)) * 0.1).astype(np.float32)
    target = rng.random((1, 3, side, side)).astype(np.float32)
    return net, z, target


def _minigrad_step(net, z, target):
    import minigrad

    optimizer = minigrad.optim.Adam(list(net.parameters()), lr=0.01)
    code, goal = minigrad.tensor(z), minigrad.tensor(target)

    def step():
        optimizer.zero_grad()
        out = net(code)
        loss = ((out - goal) * (out - goal)).mean()
        loss.backward()
        optimizer.step()
        return float(loss.item())

    return step


def _torch_step(net, z, target):
    import torch

    twin = torch_skip_net(net)
    optimizer = torch.optim.Adam(twin.parameters(), lr=0.01)
    code, goal = torch.from_numpy(z), torch.from_numpy(target)

    def step():
        optimizer.zero_grad()
        loss = ((twin(code) - goal) ** 2).mean()
        loss.backward()
        optimizer.step()
        return float(loss.item())

    return step


def _ops(runner, size, width, repeats):
    """Forward + backward time of each kind of op at the largest scale's shapes."""
    rng = np.random.default_rng(1)
    full = rng.standard_normal((1, width, size, size), dtype=np.float32)
    half = rng.standard_normal((1, width, size // 2, size // 2), dtype=np.float32)
    skip = rng.standard_normal((1, 4, size, size), dtype=np.float32)
    weight = (rng.standard_normal((width, width + 4, 3, 3)) * 0.05).astype(np.float32)
    ones, zeros = np.ones(width, np.float32), np.zeros(width, np.float32)
    if runner == "torch":
        import torch
        from torch.nn import functional as T

        def run(f, *arrays):
            inputs = [torch.from_numpy(a).requires_grad_(True) for a in arrays]
            f(*inputs).sum().backward()

        cases = {
            "conv3x3": (lambda x, s, w: T.conv2d(torch.cat([s, x], 1), w, padding=1), full, skip, weight),
            "batch_norm": (lambda x, g, b: T.batch_norm(x, None, None, g, b, training=True), full, ones, zeros),
            "leaky_relu": (lambda x: T.leaky_relu(x, 0.2), full),
            "upsample_bilinear": (lambda x: T.interpolate(x, scale_factor=2, mode="bilinear", align_corners=False),
                                  half),
            "reflection_pad": (lambda x: T.pad(x, (1, 1, 1, 1), mode="reflect"), full),
            "concatenate": (lambda s, x: torch.cat([s, x], 1), skip, full),
        }
    else:
        import minigrad
        from minigrad import functional as F

        def run(f, *arrays):
            inputs = [minigrad.tensor(a, requires_grad=True) for a in arrays]
            f(*inputs).sum().backward()

        cases = {
            "conv3x3": (lambda x, s, w: F.conv2d(minigrad.concatenate([s, x], axis=1), w, padding=1),
                        full, skip, weight),
            "batch_norm": (lambda x, g, b: F.batch_norm(x, None, None, g, b, training=True), full, ones, zeros),
            "leaky_relu": (lambda x: F.leaky_relu(x, 0.2), full),
            "upsample_bilinear": (lambda x: F.interpolate(x, scale_factor=2, mode="bilinear"), half),
            "reflection_pad": (lambda x: F.pad(x, (1, 1, 1, 1), mode="reflect"), full),
            "concatenate": (lambda s, x: minigrad.concatenate([s, x], axis=1), skip, full),
        }
    return {name: env.measure(lambda case=case: run(*case), repeats) for name, case in cases.items()}


def worker(runner, size, width, scales, repeats, warmup, ops, threads):
    """Body of the subprocess: time one runner, print a JSON line."""
    if runner == "torch":
        import torch

        if threads:
            torch.set_num_threads(threads)
    net, z, target = _problem(size, width, scales)
    step = (_torch_step if runner == "torch" else _minigrad_step)(net, z, target)
    losses = [step() for _ in range(warmup)]
    result = {"runner": runner, "size": net.size_for(size), "width": width, "scales": scales,
              "step": env.measure(step, repeats, warmup=0), "losses": losses, "env": env.describe()}
    if runner == "minigrad":
        import minigrad

        result["backend"] = minigrad.get_backend()
    if ops:
        result["ops"] = _ops(runner, net.size_for(size), width, repeats)
    result["peak_rss_mb"] = env.peak_rss_mb()
    print("RESULT " + json.dumps(result))


def main(argv=None):
    parser = argparse.ArgumentParser(prog="python -m benchmarks.dip", description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=128, help="image side (default 128; the paper's F16 is 512)")
    parser.add_argument("--width", type=int, default=128, help="channels per scale (default: the paper's 128)")
    parser.add_argument("--scales", type=int, default=5, help="scales (default: the paper's 5)")
    parser.add_argument("--repeats", type=int, default=5, help="timed steps after the warm-up (default 5)")
    parser.add_argument("--warmup", type=int, default=2, help="untimed steps first (default 2)")
    parser.add_argument("--threads", type=int, default=0, help="threads per library (default 0: their defaults)")
    parser.add_argument("--ops", action="store_true", help="also time each kind of op at the largest scale")
    parser.add_argument("--json", default=None, help="write the results here")
    parser.add_argument("--worker", choices=RUNNERS, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker:
        worker(args.worker, args.size, args.width, args.scales, args.repeats, args.warmup, args.ops, args.threads)
        return 0
    child_env = dict(os.environ)
    if args.threads:
        for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "NUMBA_NUM_THREADS"):
            child_env[var] = str(args.threads)
    results = {}
    for runner in RUNNERS:
        command = [sys.executable, "-m", "benchmarks.dip", "--worker", runner, "--size", str(args.size),
                   "--width", str(args.width), "--scales", str(args.scales), "--repeats", str(args.repeats),
                   "--warmup", str(args.warmup), "--threads", str(args.threads)] + (["--ops"] if args.ops else [])
        proc = subprocess.run(command, capture_output=True, text=True, env=child_env, check=False)
        lines = [line for line in proc.stdout.splitlines() if line.startswith("RESULT ")]
        if proc.returncode or not lines:
            print(f"{runner}: skipped: {(proc.stderr.strip().splitlines() or ['no output'])[-1]}")
            continue
        results[runner] = json.loads(lines[-1][len("RESULT "):])
    _report(results)
    env.write_json({"results": results, "load_average": os.getloadavg()}, args.json)
    return 0


def _report(results):
    print(f"load average {', '.join(f'{v:.2f}' for v in os.getloadavg())} on {os.cpu_count()} cores")
    ours, torch = results.get("minigrad"), results.get("torch")
    for name, r in results.items():
        s = r["step"]
        print(f"{name:<9} {r['size']}x{r['size']}, {r['width']} channels, {r['scales']} scales: step "
              f"{s['min_s'] * 1e3:8.1f} ms (median {s['median_s'] * 1e3:.1f}, CPU {s['min_cpu_s'] * 1e3:.0f} ms)"
              f"  peak {r['peak_rss_mb']:.0f} MiB" + (f"  [{r['backend']}]" if "backend" in r else ""))
    if ours and torch:
        print(f"ratio minigrad / torch: {ours['step']['min_s'] / torch['step']['min_s']:.2f}x wall, "
              f"{ours['step']['min_cpu_s'] / torch['step']['min_cpu_s']:.2f}x CPU; first losses "
              f"{ours['losses'][0]:.6f} vs {torch['losses'][0]:.6f}")
        for op in ours.get("ops", {}):
            a, b = ours["ops"][op], torch["ops"][op]
            print(f"  {op:<18} forward+backward {a['min_s'] * 1e3:8.2f} ms vs {b['min_s'] * 1e3:8.2f} ms: "
                  f"{a['min_s'] / b['min_s']:5.1f}x wall, {a['min_cpu_s'] / max(b['min_cpu_s'], 1e-9):5.1f}x CPU")


if __name__ == "__main__":
    raise SystemExit(main())
