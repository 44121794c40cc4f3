"""Training throughput: fashion-vgg (the shipped model's architecture), batch 128, Adam.

One training step is what ``python -m training fashion-vgg`` does per batch in one process:
forward in training mode (dropout on), cross-entropy, backward to every parameter, an Adam
step (lr 1e-3). minigrad runs ``minigrad.models.fashion_vgg.FashionVGG``; torch runs the same
layers with the same initial weights (``networks.torch_twin``), ``torch.optim.Adam``. Each
runner gets its own subprocess (``network_suite.subprocess_result``) with its thread pools
limited to ``threads`` (0: the libraries' defaults). Batches are drawn from the 2,000 shipped
Fashion-MNIST sample images; after two warm-up steps ``steps`` steps are timed one by one and
the median step gives the images per second (and the median process CPU time per step, the
steadier figure on a shared machine).
"""

import json
import os
import sys
import time

import numpy as np

from . import env, network_suite, networks

RUNNERS = ("minigrad", "torch")
BATCH = 128


def _batches(steps, seed=0):
    from methods.data import fashion_sample

    images, labels = fashion_sample()
    rng = np.random.default_rng(seed)
    for _ in range(steps):
        pick = rng.choice(len(images), BATCH, replace=False)
        yield images[pick], labels[pick]


def _minigrad_step():
    import minigrad
    from minigrad import functional as F
    from minigrad import optim
    from minigrad.models.fashion_vgg import FashionVGG

    minigrad.manual_seed(0)
    model = FashionVGG().train()
    params = list(model.parameters())
    adam = optim.Adam(params, lr=1e-3)

    def step(images, labels):
        logits = model(minigrad.tensor(model.preprocess(images)))
        loss = F.cross_entropy(logits, labels)
        for p in params:
            p.grad = None
        loss.backward()
        adam.step()
        return float(loss.item())

    return step


def _torch_step():
    import minigrad
    import torch
    from minigrad.models.fashion_vgg import FashionVGG

    minigrad.manual_seed(0)
    model = FashionVGG().train()
    net = networks.torch_twin(model)
    adam = torch.optim.Adam(net.parameters(), lr=1e-3)

    def step(images, labels):
        logits = net(torch.from_numpy(model.preprocess(images)))
        loss = torch.nn.functional.cross_entropy(logits, torch.from_numpy(labels))
        adam.zero_grad()
        loss.backward()
        adam.step()
        return float(loss.item())

    return step


def worker(runner, steps, threads):
    if threads and runner == "torch":  # minigrad reads the thread variables the parent sets
        import torch

        torch.set_num_threads(threads)
    step = _minigrad_step() if runner == "minigrad" else _torch_step()
    times, cpu = [], []
    for i, (images, labels) in enumerate(_batches(steps + 2)):
        start, start_cpu = time.perf_counter(), time.process_time()
        step(images, labels)
        if i >= 2:
            times.append(time.perf_counter() - start)
            cpu.append(time.process_time() - start_cpu)
    median = float(np.median(times))
    result = {"network": "fashion-vgg", "runner": runner, "threads": threads or os.cpu_count(), "batch": BATCH,
              "steps": steps, "median_step_s": median, "min_step_s": float(min(times)),
              "median_step_cpu_s": float(np.median(cpu)), "images_per_s": BATCH / median,
              "peak_rss_mb": env.peak_rss_mb()}
    print("RESULT " + json.dumps(result))


def run(steps, threads, runners=RUNNERS, log=print, timeout=1800):
    results = []
    for runner in runners:
        cmd = [sys.executable, "-m", "benchmarks.train_suite", runner, str(steps), str(threads)]
        result = network_suite.subprocess_result(cmd, threads, timeout, log, f"training {runner}")
        if result is not None:
            results.append(result)
            log(f"fashion-vgg training {runner:<9} {result['threads']} thr  batch {BATCH}: "
                f"{result['images_per_s']:7.0f} images/s (median step {result['median_step_s'] * 1e3:.0f} ms)")
    return results


if __name__ == "__main__":
    worker(sys.argv[1], int(sys.argv[2]), int(sys.argv[3]))
