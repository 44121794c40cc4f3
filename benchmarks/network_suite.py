"""End-to-end VGG16 / AlexNet: forward, and forward + backward to the input (frozen weights).

Each (network, runner, threads, batch) case runs in a fresh subprocess, so that its peak
memory (``ru_maxrss``) is its own and no thread pool of one library (torch's OpenMP, Numba's,
OpenBLAS's) is left spinning while another one is timed. Runners:

* ``numba`` / ``reference``: ``networks.KernelNet``, the contract's kernels chained as a
  framework would chain them (conv with fused bias + ReLU, max-pool; then ReLU backward,
  conv backward-data, max-pool backward), 224x224, float32;
* ``minigrad``: ``minigrad.models`` (vgg16 / alexnet) with frozen parameters, on minigrad's
  default CPU backend, when that package is importable;
* ``torch``: the same layer table in torch, eval mode, frozen parameters, input requiring grad.

Batch 1 measures the forward and the forward + backward to the input (the backprop-to-image
workload); larger batches measure the forward only, without gradients (inference). The numba
runner also reports the Winograd error at batch 1: its float32 logits and input gradient
against the float64 direct (im2col) chain with the same weights.
"""

import json
import os
import subprocess
import sys

import numpy as np

from . import env, networks

RUNNERS = ("numba", "torch", "minigrad", "reference")


def _torch_runner(spec, weights, x):
    import torch

    model = networks.torch_model(spec, weights)
    xt = torch.from_numpy(x)

    def forward():
        with torch.no_grad():
            return model(xt)

    def forward_backward():
        xx = xt.clone().requires_grad_(True)
        y = model(xx)
        y[0, 1].backward()
        return xx.grad

    return forward, forward_backward


def _kernel_runner(spec, weights, x, backend):
    import kernels

    net = networks.KernelNet(spec, weights, kernels.load(backend))

    def forward():
        return net.forward(x, keep=False)

    def forward_backward():
        y = net.forward(x)
        g = np.zeros_like(y)
        g[0, 1] = 1
        return net.backward_to_input(g)

    return forward, forward_backward


def _minigrad_runner(name, x):
    import minigrad
    from minigrad import models

    model = getattr(models, name)()
    model.eval()
    for prm in model.parameters():
        prm.requires_grad = False
    onehot = np.zeros((x.shape[0], 1000), np.float32)
    onehot[0, 1] = 1

    def forward():
        with minigrad.no_grad():
            return model(minigrad.tensor(x)).numpy()

    def forward_backward():
        xx = minigrad.tensor(x, requires_grad=True)
        model(xx).backward(onehot)
        return xx.grad

    return forward, forward_backward


def winograd_error(spec, weights, x):
    """Max |float32 Winograd - float64 direct| / max |float64 direct|, for logits and input gradient."""
    import kernels
    from kernels import cpu

    weights64 = {k: (w.astype(np.float64), b.astype(np.float64)) for k, (w, b) in weights.items()}
    fast = networks.KernelNet(spec, weights, cpu)
    exact = networks.KernelNet(spec, weights64, kernels.load("numba"), conv_algorithm="im2col")
    out = {}
    y32 = fast.forward(x)
    y64 = exact.forward(x.astype(np.float64))
    g = np.zeros_like(y64)
    g[0, int(np.argmax(y64[0]))] = 1
    gx32 = fast.backward_to_input(g.astype(np.float32))
    gx64 = exact.backward_to_input(g)
    out["logits_rel_err"] = float(np.abs(y32 - y64).max() / np.abs(y64).max())
    out["input_grad_rel_err"] = float(np.abs(gx32 - gx64).max() / np.abs(gx64).max())
    out["input_grad_rel_l2_err"] = float(np.linalg.norm(gx32 - gx64) / np.linalg.norm(gx64))
    return out


def worker(name, runner, repeats, with_error, threads=0, batch=1):
    """Body of the subprocess: time one runner on one network, print a JSON line."""
    if threads and runner == "torch":  # the others read the thread variables run() sets
        import torch

        torch.set_num_threads(threads)
    spec = networks.NETWORKS[name]()
    x = np.random.default_rng(1).standard_normal((batch, 3, 224, 224), dtype=np.float32)
    if runner == "minigrad":  # its own weights (torchvision's initialization): its peak memory is its own
        forward, forward_backward = _minigrad_runner(name, x)
    else:
        weights = networks.make_weights(spec)
        if runner == "torch":
            forward, forward_backward = _torch_runner(spec, weights, x)
        else:
            forward, forward_backward = _kernel_runner(spec, weights, x, runner)
    result = {"network": name, "runner": runner, "threads": threads or os.cpu_count(), "batch": batch}
    result["forward"] = env.measure(forward, repeats)
    if batch == 1:
        result["forward_backward"] = env.measure(forward_backward, repeats)
    result["peak_rss_mb"] = env.peak_rss_mb()
    result["env"] = env.describe()
    if with_error and runner == "numba" and batch == 1:
        result["winograd"] = winograd_error(spec, networks.make_weights(spec), x)
    print("RESULT " + json.dumps(result))


def run(networks_to_run, runners, repeats, log=print, reference_repeats=1, timeout=1800, threads=0, batch=1):
    """Run every (network, runner) in its own subprocess; return the result dicts. With
    ``threads`` > 0 every thread pool of the subprocess is limited to that many threads."""
    results = []
    for name in networks_to_run:
        for runner in runners:
            reps = min(repeats, reference_repeats) if runner == "reference" else repeats
            cmd = [sys.executable, "-m", "benchmarks.network_suite", name, runner, str(reps),
                   "1" if runner == "numba" and not threads else "0", str(threads), str(batch)]
            result = subprocess_result(cmd, threads, timeout, log, f"{name} {runner} batch {batch}")
            if result is not None:
                results.append(result)
                log(format_result(result))
    return results


def subprocess_result(cmd, threads, timeout, log, label):
    """Run a worker command (thread variables set when ``threads``); its RESULT line as a dict."""
    child_env = dict(os.environ)
    if threads:
        for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "NUMBA_NUM_THREADS"):
            child_env[var] = str(threads)
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, env=child_env)
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("RESULT ")]
    if proc.returncode != 0 or not lines:
        reason = (proc.stderr.strip().splitlines() or ["no output"])[-1]
        log(f"{label} skipped: {reason}")
        return None
    return json.loads(lines[-1][len("RESULT "):])


def format_result(r):
    text = (f"{r['network']:<8} {r['runner']:<9} {r.get('threads', '?')} thr batch {r.get('batch', 1):<3} "
            f"forward {r['forward']['min_s'] * 1e3:8.1f} ms")
    if "forward_backward" in r:
        text += (f"   forward+backward {r['forward_backward']['min_s'] * 1e3:8.1f} ms"
                 f" (CPU {r['forward_backward']['min_cpu_s'] * 1e3:.0f} ms)")
    text += f"   peak {r['peak_rss_mb']:7.0f} MiB"
    if "winograd" in r:
        text += f"   winograd err logits {r['winograd']['logits_rel_err']:.1e}"
    return text


if __name__ == "__main__":
    worker(sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4] == "1", int(sys.argv[5]), int(sys.argv[6]))
