"""k-means timing and inertia: ours (methods.kmeans) against scikit-learn's KMeans on the same data.

    python -m benchmarks.kmeans                        # 50,000 7x7 patches, k = 256, seeds 0-2
    python -m benchmarks.kmeans --n 20000 --k 64 --json out.json

The data are what the bag of visual words clusters: random 7 x 7 patches of the Fashion-MNIST
sample shipped in methods/data, float32 in [0, 1]. Both run k-means++ seeding (greedy, 2 + ln k
candidates per step) and Lloyd's iteration with ``n_init=1``, ``tol=1e-4`` (relative to the
data's mean variance) and at most 300 iterations, once per seed; the runs alternate, ours then
scikit-learn's, so both meet the same machine load. Reported per seed: wall and CPU time (all
threads), iterations, inertia; then the medians and the ratios scikit-learn / ours for time
(above 1: we are faster) and ours / scikit-learn for inertia (the issue asks for 1% at most).
A first untimed call warms Numba's kernels, as a user's second run finds them cached. The
machine's load average is printed with the results: on a shared machine wall times move with it,
CPU times much less.
"""

import argparse
import json
import os
import sys
import time

import numpy as np

from benchmarks.env import write_json


def patches(n, side=7, seed=0):
    from methods.data import fashion_sample

    images = fashion_sample()[0]
    rng = np.random.default_rng(seed)
    which = rng.integers(0, len(images), n)
    top, left = rng.integers(0, 29 - side, n), rng.integers(0, 29 - side, n)
    rows, cols = top[:, None] + np.arange(side), left[:, None] + np.arange(side)
    return (images[which[:, None, None], rows[:, :, None], cols[:, None, :]].reshape(n, -1) / 255).astype(np.float32)


def timed(fn):
    start, cpu = time.perf_counter(), time.process_time()
    out = fn()
    return out, time.perf_counter() - start, time.process_time() - cpu


def main(argv=None):
    parser = argparse.ArgumentParser(prog="python -m benchmarks.kmeans", description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=50_000, help="patches (default 50,000)")
    parser.add_argument("--k", type=int, default=256, help="clusters (default 256)")
    parser.add_argument("--seeds", type=int, default=3, help="runs per library, seeds 0.. (default 3)")
    parser.add_argument("--json", default=None, help="also write the results here")
    args = parser.parse_args(argv)
    from methods.kmeans import kmeans

    x = patches(args.n)
    kmeans(x[:2000], 8)  # compile / load the kernels
    try:
        from sklearn import __version__ as sklearn_version
        from sklearn.cluster import KMeans
    except ImportError:
        KMeans = sklearn_version = None
    load_before = os.getloadavg()
    rows = []
    for seed in range(args.seeds):
        ours, wall, cpu = timed(lambda: kmeans(x, args.k, seed=seed))
        row = {"seed": seed, "ours": {"seconds": wall, "cpu_seconds": cpu, "iterations": ours.iterations,
                                      "inertia": ours.inertia}}
        if KMeans is not None:
            theirs, wall, cpu = timed(lambda: KMeans(args.k, n_init=1, random_state=seed).fit(x))
            row["sklearn"] = {"seconds": wall, "cpu_seconds": cpu, "iterations": int(theirs.n_iter_),
                              "inertia": float(theirs.inertia_)}
        rows.append(row)
        print(json.dumps(row), flush=True)
    summary = {"n": args.n, "dim": int(x.shape[1]), "k": args.k, "seeds": args.seeds, "rows": rows,
               "load_average_before": load_before, "load_average_after": os.getloadavg(),
               "sklearn": sklearn_version}
    for name in ("ours", "sklearn"):
        if name in rows[0]:
            summary[name] = {key: float(np.median([r[name][key] for r in rows]))
                             for key in ("seconds", "cpu_seconds", "iterations", "inertia")}
    if "sklearn" in summary:
        summary["time_ratio_sklearn_over_ours"] = summary["sklearn"]["seconds"] / summary["ours"]["seconds"]
        summary["cpu_ratio_sklearn_over_ours"] = summary["sklearn"]["cpu_seconds"] / summary["ours"]["cpu_seconds"]
        summary["inertia_ratio_ours_over_sklearn"] = (np.mean([r["ours"]["inertia"] for r in rows])
                                                      / np.mean([r["sklearn"]["inertia"] for r in rows]))
    print(json.dumps({k: v for k, v in summary.items() if k != "rows"}, indent=1))
    write_json(summary, args.json)
    return 0


if __name__ == "__main__":
    sys.exit(main())
