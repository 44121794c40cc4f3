"""t-SNE timing: our Barnes-Hut t-SNE (methods.tsne) against scikit-learn's on the same data.

    python -m benchmarks.tsne                    # 10,000 points, 50-D, 1000 iterations
    python -m benchmarks.tsne --n 2000 --json out.json

The data are a seeded mixture of 10 Gaussian clusters in ``--dim`` dimensions (a stand-in for
PCA-reduced CNN codes). Both runs use perplexity 30, early exaggeration 12 for 250 iterations,
PCA initialisation, theta (angle) 0.5 and the same total iteration count; each uses its own
automatic learning rate. Reported per run: wall time (a first, untimed call warms up Numba's
compiled kernels, as a user's second run would find them cached) and CPU time (all threads;
the fairer number on a shared machine), final KL divergence as each
library computes it, and the 5-NN accuracy of the cluster labels in the embedding. The ratio
is scikit-learn's time over ours (above 1: we are faster). scikit-learn is optional; without it
only our numbers are printed.
"""

import argparse
import json
import os
import sys
import time

import numpy as np


def mixture(n, dim, clusters=10, seed=0):
    rng = np.random.default_rng(seed)
    centres = rng.normal(0, 4, (clusters, dim))
    labels = rng.integers(0, clusters, n)
    return centres[labels] + rng.normal(size=(n, dim)), labels


def knn_accuracy(y, labels, k=5, chunk=2000):
    correct = 0
    for start in range(0, len(y), chunk):
        block = y[start: start + chunk]
        d = (block ** 2).sum(1)[:, None] + (y ** 2).sum(1)[None] - 2 * block @ y.T
        d[np.arange(len(block)), np.arange(start, start + len(block))] = np.inf
        nearest = np.argpartition(d, k, axis=1)[:, :k]
        votes = labels[nearest]
        predicted = np.array([np.bincount(v).argmax() for v in votes])
        correct += (predicted == labels[start: start + len(block)]).sum()
    return correct / len(y)


def run_ours(x, labels, n_iter):
    from methods.tsne import tsne

    tsne(x[:500], method="barnes-hut", n_iter=n_iter if n_iter < 300 else 300)  # compile / load the kernels
    start, cpu = time.perf_counter(), time.process_time()
    result = tsne(x, method="barnes-hut", n_iter=n_iter)
    seconds = time.perf_counter() - start
    return dict(seconds=seconds, cpu_seconds=time.process_time() - cpu, affinity_seconds=result.extras["affinity_seconds"], kl=result.kl_divergence,
                knn_accuracy=knn_accuracy(result.coordinates, labels))


def run_sklearn(x, labels, n_iter):
    try:
        from sklearn import __version__
        from sklearn.manifold import TSNE
    except ImportError:
        return None
    start, cpu = time.perf_counter(), time.process_time()
    kwargs = dict(perplexity=30.0, early_exaggeration=12.0, init="pca", method="barnes_hut", angle=0.5,
                  random_state=0, learning_rate="auto")
    try:
        model = TSNE(max_iter=n_iter, **kwargs)
    except TypeError:  # scikit-learn < 1.5 calls it n_iter
        model = TSNE(n_iter=n_iter, **kwargs)
    y = model.fit_transform(x)
    seconds = time.perf_counter() - start
    return dict(seconds=seconds, cpu_seconds=time.process_time() - cpu, kl=float(model.kl_divergence_), knn_accuracy=knn_accuracy(y, labels),
                version=__version__)


def main(argv=None):
    parser = argparse.ArgumentParser(prog="python -m benchmarks.tsne", description=__doc__.split("\n\n")[0])
    parser.add_argument("--n", type=int, default=10_000, help="points (default: 10000)")
    parser.add_argument("--dim", type=int, default=50, help="dimensions (default: 50)")
    parser.add_argument("--n-iter", type=int, default=1000, help="iterations (default: 1000)")
    parser.add_argument("--skip-sklearn", action="store_true", help="time only ours")
    parser.add_argument("--json", default=None, help="also write the numbers to this JSON file")
    args = parser.parse_args(argv)

    x, labels = mixture(args.n, args.dim)
    import numba

    report = dict(n=args.n, dim=args.dim, n_iter=args.n_iter, cpus=os.cpu_count(), numba_threads=numba.get_num_threads())
    report["ours"] = run_ours(x, labels, args.n_iter)
    print(f"ours:         {report['ours']['seconds']:.1f} s (CPU {report['ours']['cpu_seconds']:.1f} s)  (affinities {report['ours']['affinity_seconds']:.1f} s)"
          f"  KL {report['ours']['kl']:.4f}  5-NN accuracy {report['ours']['knn_accuracy']:.4f}")
    if not args.skip_sklearn:
        report["sklearn"] = run_sklearn(x, labels, args.n_iter)
        if report["sklearn"] is None:
            print("scikit-learn is not installed: pip install scikit-learn to compare", file=sys.stderr)
        else:
            s = report["sklearn"]
            report["sklearn_over_ours"] = s["seconds"] / report["ours"]["seconds"]
            print(f"scikit-learn: {s['seconds']:.1f} s (CPU {s['cpu_seconds']:.1f} s)  KL {s['kl']:.4f}  5-NN accuracy {s['knn_accuracy']:.4f}"
                  f"  (version {s['version']})")
            print(f"time ratio scikit-learn / ours: {report['sklearn_over_ours']:.2f}")
    if args.json:
        with open(args.json, "w") as handle:
            json.dump(report, handle, indent=2)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
