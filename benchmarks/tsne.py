"""t-SNE timing: our t-SNE (methods.tsne: Barnes-Hut, FFT interpolation, exact for small N)
against scikit-learn's and openTSNE's on the same data, all in one run.

    python -m benchmarks.tsne                    # 10,000 points, 50-D, 1000 iterations
    python -m benchmarks.tsne --n 2000 --runs ours-exact,ours-fft,opentsne-fft --json out.json

The data are a seeded mixture of 10 Gaussian clusters in ``--dim`` dimensions (a stand-in for
PCA-reduced CNN codes). Every run uses perplexity 30, early exaggeration 12 for 250 iterations
then none, PCA initialisation, the same total iteration count and its library's automatic
learning rate; Barnes-Hut runs use theta (angle) 0.5; openTSNE runs with ``n_jobs`` = the core
count and its own defaults otherwise (momentum 0.8 throughout, approximate neighbours). Each run
is a fresh subprocess (no other library's thread pool alive) that first makes one untimed call
on 500 points (so Numba's compiled kernels are loaded, as a user's second run finds them), then
times the real one.

Reported per run: wall time, process CPU time (all threads), the KL divergence as the library
reports it, the KL of the embedding under one common evaluator (P on the exact 90 nearest
neighbours of the data, as ``methods.tsne`` computes it, and the exact Z over all pairs:
:func:`methods.tsne.sparse_kl`), the 5-NN accuracy of the cluster labels in the embedding, and
the load average just before the run. Ratios are a run's time over ``ours-fft`` (above 1: ours
is faster). scikit-learn and openTSNE are optional; a run whose library is missing is skipped.
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

RUNS = ("ours-exact", "ours-bh", "ours-fft", "sklearn", "opentsne-fft", "opentsne-bh")
#: ``ours-exact`` (O(N^2) memory and time per iteration) runs by default only up to this N.
EXACT_MAX_N = 2000


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


def _ours(method):
    def run(x, n_iter, jobs):
        from methods.tsne import tsne

        name = {"exact": "exact", "bh": "barnes-hut", "fft": "fft"}[method]
        result = tsne(x, method=name, n_iter=n_iter)
        return result.coordinates, result.kl_divergence, "minigrad"
    return run


def _sklearn(x, n_iter, jobs):
    from sklearn import __version__
    from sklearn.manifold import TSNE

    kwargs = dict(perplexity=30.0, early_exaggeration=12.0, init="pca", method="barnes_hut", angle=0.5,
                  random_state=0, learning_rate="auto", n_jobs=jobs)
    try:
        model = TSNE(max_iter=n_iter, **kwargs)
    except TypeError:  # scikit-learn < 1.5 calls it n_iter
        model = TSNE(n_iter=n_iter, **kwargs)
    y = model.fit_transform(x)
    return y, float(model.kl_divergence_), __version__


def _opentsne(method):
    def run(x, n_iter, jobs):
        import openTSNE

        model = openTSNE.TSNE(perplexity=30, early_exaggeration=12, early_exaggeration_iter=250,
                              n_iter=n_iter - 250, initialization="pca", negative_gradient_method=method,
                              theta=0.5, n_jobs=jobs, random_state=0)
        embedding = model.fit(x)
        return np.asarray(embedding), float(embedding.kl_divergence), openTSNE.__version__
    return run


RUNNERS = {"ours-exact": _ours("exact"), "ours-bh": _ours("bh"), "ours-fft": _ours("fft"), "sklearn": _sklearn,
           "opentsne-fft": _opentsne("fft"), "opentsne-bh": _opentsne("bh")}


def worker(name, n, dim, n_iter, jobs, out):
    """Body of the subprocess: one warm-up call on 500 points, then the timed run; writes the
    coordinates to ``out`` and prints a JSON line."""
    x, _ = mixture(n, dim)
    run = RUNNERS[name]
    run(x[:500], max(n_iter // 4, 260), jobs)
    load = os.getloadavg()[0]
    start, cpu = time.perf_counter(), time.process_time()
    y, kl, version = run(x, n_iter, jobs)
    seconds, cpu_seconds = time.perf_counter() - start, time.process_time() - cpu
    np.save(out, np.asarray(y, np.float64))
    print("RESULT " + json.dumps(dict(run=name, seconds=seconds, cpu_seconds=cpu_seconds, library_kl=kl,
                                      version=version, load_before=load)))


def run_all(runs, n, dim, n_iter, jobs, log=print):
    """Each run in its own subprocess; the common KL and 5-NN accuracy computed here."""
    from methods.tsne import joint_affinities_sparse, sparse_kl

    x, labels = mixture(n, dim)
    affinities = joint_affinities_sparse(x, 30.0)
    results = {}
    with tempfile.TemporaryDirectory() as tmp:
        for name in runs:
            out = os.path.join(tmp, name + ".npy")
            cmd = [sys.executable, "-m", "benchmarks.tsne", "--worker", name, "--n", str(n), "--dim", str(dim),
                   "--n-iter", str(n_iter), "--jobs", str(jobs), "--out", out]
            proc = subprocess.run(cmd, capture_output=True, text=True)
            lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("RESULT ")]
            if proc.returncode != 0 or not lines:
                reason = (proc.stderr.strip().splitlines() or ["no output"])[-1]
                log(f"{name:<13} skipped: {reason}")
                continue
            result = json.loads(lines[-1][len("RESULT "):])
            y = np.load(out)
            result["kl"] = sparse_kl(*affinities, y)
            result["knn_accuracy"] = float(knn_accuracy(y, labels))
            results[name] = result
            log(f"{name:<13} {result['seconds']:6.1f} s (CPU {result['cpu_seconds']:6.1f} s)  KL {result['kl']:.4f}"
                f" (library's own: {result['library_kl']:.4f})  5-NN {result['knn_accuracy']:.4f}"
                f"  load {result['load_before']:.2f}  [{result['version']}]")
    if "ours-fft" in results:
        base = results["ours-fft"]
        for name, result in results.items():
            result["time_over_ours_fft"] = result["seconds"] / base["seconds"]
            result["kl_over_ours_fft"] = result["kl"] / base["kl"]
        log("time / ours-fft: " + ", ".join(f"{k} {v['time_over_ours_fft']:.2f}" for k, v in results.items()))
        log("ours-fft KL / peer KL: " + ", ".join(f"{k} {base['kl'] / v['kl']:.4f}" for k, v in results.items()
                                                   if k != "ours-fft"))
    return results


def uptime():
    try:
        return subprocess.run(["uptime"], capture_output=True, text=True).stdout.strip()
    except OSError:
        return "load average: " + ", ".join(f"{v:.2f}" for v in os.getloadavg())


def main(argv=None):
    parser = argparse.ArgumentParser(prog="python -m benchmarks.tsne", description=__doc__.split("\n\n")[0])
    parser.add_argument("--n", type=int, default=10_000, help="points (default: 10000)")
    parser.add_argument("--dim", type=int, default=50, help="dimensions (default: 50)")
    parser.add_argument("--n-iter", type=int, default=1000, help="iterations in all, at least 260 (default: 1000)")
    parser.add_argument("--runs", default=None,
                        help=f"comma-separated, from {', '.join(RUNS)} (default: all; ours-exact only up to "
                             f"{EXACT_MAX_N} points)")
    parser.add_argument("--jobs", type=int, default=os.cpu_count(), help="threads for the peers (default: all cores)")
    parser.add_argument("--json", default=None, help="also write the numbers to this JSON file")
    parser.add_argument("--worker", default=None, help=argparse.SUPPRESS)
    parser.add_argument("--out", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.n_iter < 260:
        parser.error("--n-iter must be at least 260 (250 of them are early exaggeration)")
    if args.worker:
        worker(args.worker, args.n, args.dim, args.n_iter, args.jobs, args.out)
        return 0
    runs = args.runs.split(",") if args.runs else [r for r in RUNS if r != "ours-exact" or args.n <= EXACT_MAX_N]
    unknown = sorted(set(runs) - set(RUNS))
    if unknown:
        parser.error(f"unknown runs {unknown}; choose from {', '.join(RUNS)}")

    import numba

    report = dict(n=args.n, dim=args.dim, n_iter=args.n_iter, cpus=os.cpu_count(), jobs=args.jobs,
                  numba_threads=numba.get_num_threads(), uptime_before=uptime())
    print(report["uptime_before"])
    report["runs"] = run_all(runs, args.n, args.dim, args.n_iter, args.jobs)
    report["uptime_after"] = uptime()
    print(report["uptime_after"])
    write_json(report, args.json)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
