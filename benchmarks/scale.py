"""Scale: dataset scans in bounded memory, and their throughput on 1 and 2 Dask workers.

    python -m benchmarks.scale                                   # VGG16-random pool5, 224 x 224
    python -m benchmarks.scale --images 10000 --memory-only       # the memory row alone
    python -m benchmarks.scale --model fashion-vgg --layer pool3 --throughput-images 2000

Two measurements, each in its own process (its own peak RSS), on a synthetic folder of JPEG
photos-like images (smooth random colour fields of 320 x 240 to 500 x 375, as ImageNet's
validation images are; generated into a temporary folder, never committed):

* **memory**: ``methods.lib.scan`` over ``--images`` images through ``--layer`` (pool5's 25,088
  values per image), the features written to a float32 store; peak resident memory of the
  process (``resource.getrusage``) and its growth over the process after loading the model.
  The store itself is on disk (``--images`` x 100 KB at pool5);
* **throughput** (images/s) of the same scan over ``--throughput-images`` images: in one process
  (the serial path), then on a Dask ``LocalCluster`` of 1 and of 2 worker processes (each
  worker given cores // workers threads), the scaling factor 2 workers / 1 worker, and the peer
  measured in the same run: the bare forward pass of the same batches (no decoding, no store) in
  minigrad and, when installed, torch.

The machine's load (``os.getloadavg``) is printed with every figure: on a shared machine the
2-worker figure is a lower bound.
"""

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time

import numpy as np

from benchmarks.env import write_json


def make_folder(folder, count, sizes=((240, 320), (375, 500)), classes=2, seed=0, suffix=".jpg", start=0):
    """Write ``count`` images into ``folder`` (one sub-folder per class): smooth random colour fields
    (an 8 x 8 grid of random colours, bilinearly enlarged, plus a little noise) at a random size
    between the two ``sizes`` (height, width), so they decode and resize like photographs. Images
    ``start`` .. ``start + count - 1`` of the seeded sequence; returns the folder."""
    from PIL import Image

    for c in range(classes):
        os.makedirs(os.path.join(folder, f"class{c}"), exist_ok=True)
    for i in range(start, start + count):
        rng = np.random.default_rng((seed, i))
        h = int(rng.integers(sizes[0][0], sizes[1][0] + 1))
        w = int(rng.integers(sizes[0][1], sizes[1][1] + 1))
        field = Image.fromarray(rng.integers(0, 256, (8, 8, 3), dtype=np.uint8)).resize((w, h), Image.BILINEAR)
        pixels = np.clip(np.asarray(field, np.int16) + rng.integers(-8, 9, (h, w, 3)), 0, 255).astype(np.uint8)
        Image.fromarray(pixels).save(os.path.join(folder, f"class{i % classes}", f"{i:06d}{suffix}"), quality=90)
    return folder


def load(model_name, layer):
    import minigrad
    from minigrad import models

    minigrad.manual_seed(0)
    model = models.load(model_name)
    model.check_layers([layer])
    return model


def child_memory(args):
    """The memory row, in this (fresh) process: scan ``args.images`` images into a store on disk."""
    from benchmarks.env import peak_rss_mb
    from methods.lib import scan
    from methods.lib.datasets import load_dataset

    model = load(args.model, args.layer)
    data = load_dataset(model, args.folder, limit=args.images, cache=args.cache)
    batch = scan.batch_size_for(model, data.images, args.layer)
    base = peak_rss_mb()
    start = time.perf_counter()
    store, = scan.scan(model, data, [scan.LayerFeatures(args.layer)], batch, f"scan {args.layer}", verbose=True)
    seconds = time.perf_counter() - start
    stored = sum(os.path.getsize(os.path.join(store.folder, f)) for f in os.listdir(store.folder))
    return {"images": len(data.images), "batch": batch, "seconds": seconds, "images_per_s": len(data.images) / seconds,
            "peak_rss_mib": peak_rss_mb(), "after_model_mib": base, "store_mib": stored / 2**20,
            "load": os.getloadavg()}


def child_throughput(args):
    """Images/s of the scan of ``args.throughput_images`` images with ``args.workers`` Dask workers (0:
    in this process), after a warm-up; with 0, also the bare forward of the same batches."""
    import minigrad
    from methods.lib import cluster, scan
    from methods.lib.datasets import load_dataset

    model = load(args.model, args.layer)
    data = load_dataset(model, args.folder, limit=args.throughput_images, cache=False)
    warm = load_dataset(model, args.folder, limit=2 * max(1, args.workers), cache=False)
    batch = scan.batch_size_for(model, data.images, args.layer)
    work = [scan.LayerFeatures(args.layer)]
    out = {"workers": args.workers, "images": len(data.images), "batch": batch}

    def timed():
        scan.scan(model, warm, work, 1, "warm-up")
        load_before = os.getloadavg()[0]
        start = time.perf_counter()
        scan.scan(model, data, work, batch, f"scan {args.layer}", verbose=True)
        seconds = time.perf_counter() - start
        return {"seconds": seconds, "images_per_s": len(data.images) / seconds,
                "load": [load_before, os.getloadavg()[0]]}

    if not args.workers:
        out.update(timed())
        pixels = data.images[:]
        x = model.preprocessing.normalize(pixels)
        start = time.perf_counter()
        with minigrad.no_grad():
            for first in range(0, len(x), batch):
                model.extract(minigrad.tensor(x[first: first + batch]), [args.layer])
        out["forward_images_per_s"] = len(x) / (time.perf_counter() - start)
        out["torch_forward_images_per_s"] = torch_forward(args, x, batch)
        return out
    with cluster.connect(workers=args.workers) as client, scan.distributed(client, args.model, 0):
        client.run(cluster.worker_model, args.model, 0)  # the model in every worker before the clock starts
        out.update(timed())
    return out


def torch_forward(args, x, batch):
    """Images/s of the same layers in torch (VGG16 to pool5 only), or None."""
    if not (args.model.startswith("vgg16") and args.layer == "pool5"):
        return None
    try:
        import torch
    except ImportError:
        return None
    from benchmarks.networks import make_weights, torch_model, vgg16_spec

    spec = vgg16_spec()
    net = torch_model(spec, make_weights(spec))[:31]  # 13 conv + ReLU, 5 pools: up to pool5
    with torch.no_grad():
        net(torch.from_numpy(x[:batch]))
        start = time.perf_counter()
        for first in range(0, len(x), batch):
            net(torch.from_numpy(x[first: first + batch]))
    return len(x) / (time.perf_counter() - start)


def run_child(kind, args, extra=()):
    command = [sys.executable, "-m", "benchmarks.scale", "--child", kind, "--folder", args.folder, "--model",
               args.model, "--layer", args.layer, "--images", str(args.images), "--throughput-images",
               str(args.throughput_images), "--cache", args.cache,
               *(["--shard", str(args.shard)] if args.shard and kind == "throughput" else []), *extra]
    result = subprocess.run(command, capture_output=True, text=True, cwd=os.path.dirname(os.path.dirname(
        os.path.abspath(__file__))))
    if result.returncode:
        raise RuntimeError(f"{kind} failed:\n{result.stderr[-3000:]}")
    return json.loads(result.stdout.strip().splitlines()[-1])


def main(argv=None):
    parser = argparse.ArgumentParser(prog="python -m benchmarks.scale", description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default="vgg16-random", help="model name (default: vgg16-random)")
    parser.add_argument("--layer", default="pool5", help="layer scanned (default: pool5)")
    parser.add_argument("--images", type=int, default=10_000, help="images of the memory row (default: 10000)")
    parser.add_argument("--throughput-images", type=int, default=64, help="images per throughput run (default: 64)")
    parser.add_argument("--workers", default="1,2", help="Dask worker counts to time (default: 1,2)")
    parser.add_argument("--folder", default=None, help="image folder (default: a synthetic one in a temporary folder)")
    parser.add_argument("--cache", default=None, help="scan cache of the memory row (default: a temporary folder)")
    parser.add_argument("--memory-only", action="store_true", help="only the memory row")
    parser.add_argument("--throughput-only", action="store_true", help="only the throughput rows")
    parser.add_argument("--shard", type=int, default=None,
                        help="images per shard, one Dask task each (default: methods.lib.scan.SHARD_IMAGES, 256; "
                             "the throughput rows need at least 2 shards per worker)")
    parser.add_argument("--json", default=None, help="also write the results here")
    parser.add_argument("--child", default=None, help=argparse.SUPPRESS)
    parser.add_argument("--child-workers", type=int, default=0, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        from methods.lib import scan

        scan.SHARD_IMAGES = args.shard or scan.SHARD_IMAGES
        args.workers = args.child_workers
        print(json.dumps(child_memory(args) if args.child == "memory" else child_throughput(args)))
        return
    temporary = tempfile.TemporaryDirectory(prefix="minigrad-scale-")
    with temporary:
        args.folder = args.folder or os.path.join(temporary.name, "images")
        args.cache = args.cache or os.path.join(temporary.name, "cache")
        wanted = max(args.images if not args.throughput_only else 0, args.throughput_images)
        have = len([f for _, _, files in os.walk(args.folder) for f in files]) if os.path.isdir(args.folder) else 0
        if have < wanted:
            print(f"writing {wanted - have} synthetic images into {args.folder} ...", flush=True)
            make_folder(args.folder, wanted - have, start=have)
        report = {"model": args.model, "layer": args.layer, "cores": os.cpu_count()}
        if not args.throughput_only:
            row = run_child("memory", args)
            report["memory"] = row
            print(f"memory: {row['images']} images through {args.model} {args.layer} (batch {row['batch']}): peak RSS "
                  f"{row['peak_rss_mib']:.0f} MiB ({row['after_model_mib']:.0f} after loading the model); store "
                  f"{row['store_mib']:.0f} MiB on disk; {row['images_per_s']:.2f} images/s; load "
                  f"{' '.join(f'{v:.1f}' for v in row['load'])}", flush=True)
        if not args.memory_only:
            rows = [run_child("throughput", args, ["--child-workers", str(w)])
                    for w in [0] + [int(w) for w in args.workers.split(",") if w.strip()]]
            report["throughput"] = rows
            for row in rows:
                where = f"{row['workers']} Dask worker(s)" if row["workers"] else "one process"
                peers = ""
                if not row["workers"]:
                    torch = row["torch_forward_images_per_s"]
                    peers = (f"; bare forward {row['forward_images_per_s']:.2f}/s"
                             + (f", torch {torch:.2f}/s (scan / torch forward {row['images_per_s'] / torch:.2f}x)"
                                if torch else ""))
                print(f"throughput, {where}: {row['images_per_s']:.2f} images/s ({row['images']} images, batch "
                      f"{row['batch']}, load {row['load'][0]:.1f}->{row['load'][1]:.1f}){peers}", flush=True)
            by = {row["workers"]: row["images_per_s"] for row in rows}
            if 1 in by and 2 in by:
                report["scaling_2_over_1"] = by[2] / by[1]
                print(f"scaling, 2 workers / 1 worker: {by[2] / by[1]:.2f}x on {os.cpu_count()} cores "
                      "(shared: a lower bound)")
        write_json(report, args.json)


if __name__ == "__main__":
    main()
