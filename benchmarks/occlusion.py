"""Occlusion (Zeiler & Fergus 2014): incremental inference against full recomputation.

    python -m benchmarks.occlusion [--model vgg16] [--image-size 224] [--size 32] [--stride 32]
                                   [--batch-size 16] [--json PATH]

Times ``methods.occlusion`` twice on one random image, with ``incremental=True`` and False,
after one untimed warm-up of each (Numba compiles on first use), checks that the two maps
agree, and prints the seconds per occluder position and the
speed-up. The cost per position does not depend on the stride, so the default stride equals
the size to keep the run short (7 x 7 = 49 positions at 224). The model is
``minigrad.models.<name>()`` with torchvision's random initialization (timings do not
depend on the values).
"""

import argparse
import json
import time

import numpy as np

import minigrad
from benchmarks.env import write_json


def load_model(name):
    """``minigrad.models.<name>()`` with torchvision's random initialization, in eval mode."""
    from minigrad import models

    minigrad.manual_seed(0)
    return getattr(models, name)().eval().requires_grad_(False), f"minigrad.models.{name}() (random init)"


def main(argv=None):
    from methods.occlusion import occlusion

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="vgg16")
    parser.add_argument("--image-size", type=int, default=224)
    parser.add_argument("--size", type=int, default=32)
    parser.add_argument("--stride", type=int, default=32)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--json", default=None)
    args = parser.parse_args(argv)
    model, source = load_model(args.model)
    x = np.random.default_rng(0).normal(size=(1, 3, args.image_size, args.image_size)).astype(np.float32)
    timings, results = {}, {}
    for incremental in (True, False):  # warm-up: JIT compilation and caches are not timed
        occlusion(model, x, size=args.size, stride=args.image_size, batch_size=args.batch_size, incremental=incremental)
    for incremental in (True, False):
        start = time.perf_counter()
        results[incremental] = occlusion(model, x, size=args.size, stride=args.stride, batch_size=args.batch_size,
                                         incremental=incremental)
        timings[incremental] = time.perf_counter() - start
    a, b = results[True], results[False]
    positions = a.extras["positions"]
    report = {
        "model": args.model, "model_source": source, "backend": minigrad.get_backend(),
        "image_size": args.image_size, "occluder": args.size, "stride": args.stride, "positions": positions,
        "batch_size": args.batch_size, "used_incremental": a.extras["used_incremental"],
        "seconds_incremental": timings[True], "seconds_full": timings[False],
        "seconds_per_position_incremental": timings[True] / positions,
        "seconds_per_position_full": timings[False] / positions,
        "speedup": timings[False] / timings[True],
        "max_abs_probability_difference": float(np.abs(a.probability - b.probability).max()),
        "top_class_maps_equal": bool((a.top_class == b.top_class).all()),
    }
    print(json.dumps(report, indent=2))
    write_json(report, args.json)
    return report


if __name__ == "__main__":
    main()
