"""python -m benchmarks [--suite kernels,vgg16,alexnet] [--repeats N] [--out DIR] [--backends ...]

Prints, for each kernel and each VGG16/AlexNet layer shape, the time, GFLOP/s and % of the
sgemm rate measured in the same run, for every backend present; then end-to-end VGG16 and
AlexNet forward and forward+backward-to-input times with the ratio to torch and the peak
memory. Writes ``results.json`` and ``results.png`` (matplotlib, when installed) into --out.
"""

import argparse
import json
import os
import sys
import time

from . import env, kernel_suite, network_suite

SUITES = ("kernels", "vgg16", "alexnet")


def parse_args(argv):
    parser = argparse.ArgumentParser(prog="python -m benchmarks", description=__doc__.splitlines()[0])
    parser.add_argument("--suite", default="kernels,vgg16,alexnet",
                        help="comma-separated suites among: " + ", ".join(SUITES))
    parser.add_argument("--repeats", type=int, default=5, help="timed runs per case after one warm-up (default 5)")
    parser.add_argument("--reference-repeats", type=int, default=1,
                        help="timed runs for the slow NumPy reference (default 1)")
    parser.add_argument("--backends", default="reference,numba,torch,cupy",
                        help="kernel backends to time, those absent are skipped (default: all)")
    parser.add_argument("--runners", default="numba,minigrad,torch,reference",
                        help="end-to-end runners: " + ", ".join(network_suite.RUNNERS))
    parser.add_argument("--threads", default="0",
                        help="end-to-end thread counts, comma-separated; 0 = the libraries' defaults "
                             "(e.g. 0,1 adds single-threaded runs, whose CPU-time ratios do not depend "
                             "on what else the machine is doing)")
    parser.add_argument("--out", default="bench-results", help="folder for results.json and results.png")
    args = parser.parse_args(argv)
    args.suite = [s.strip() for s in args.suite.split(",") if s.strip()]
    unknown = [s for s in args.suite if s not in SUITES]
    if unknown:
        parser.error(f"unknown suite(s) {', '.join(unknown)}; choose among {', '.join(SUITES)}")
    args.backends = [b.strip() for b in args.backends.split(",") if b.strip()]
    args.runners = [r.strip() for r in args.runners.split(",") if r.strip()]
    args.threads = [int(t) for t in args.threads.split(",") if t.strip()]
    return args


def ratio_table(results):
    """Rows of end-to-end times with each runner's ratio to torch on the same network."""
    lines = []
    by_net = {}
    for r in results:
        by_net.setdefault((r["network"], r.get("threads")), {})[r["runner"]] = r
    for (net, threads), runs in by_net.items():
        torch_run = runs.get("torch")
        for runner, r in runs.items():
            f, fb = r["forward"]["min_s"], r["forward_backward"]["min_s"]
            cpu = r["forward_backward"]["min_cpu_s"]
            rf = f"{f / torch_run['forward']['min_s']:.2f}x" if torch_run else "-"
            rfb = f"{fb / torch_run['forward_backward']['min_s']:.2f}x" if torch_run else "-"
            rcpu = f"{cpu / torch_run['forward_backward']['min_cpu_s']:.2f}x" if torch_run else "-"
            lines.append(f"| {net} | {threads} | {runner} | {f * 1e3:.0f} | {rf} | {fb * 1e3:.0f} | {rfb} | "
                         f"{cpu * 1e3:.0f} | {rcpu} | {r['peak_rss_mb']:.0f} |")
    header = ["| network | threads | runner | forward ms | vs torch | fwd+bwd-to-input ms | vs torch | "
              "fwd+bwd CPU ms | vs torch | peak RSS MiB |",
              "|---|---:|---|---:|---:|---:|---:|---:|---:|---:|"]
    return header + lines


def chart(results, kernel_rows, path):
    """Bar charts: per-layer conv forward + backward-data time by backend, and end to end."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return None
    fig, axes = plt.subplots(1, 2, figsize=(16, 6), gridspec_kw={"width_ratios": [3, 1]})
    convs = [r for r in kernel_rows if r["kernel"] in ("conv2d_forward", "conv2d_backward_data")]
    layers = list(dict.fromkeys(r["layer"].split("+")[0] for r in convs))
    backends = [b for b in ("numba", "torch", "cupy") if any(r["backend"] == b for r in convs)]
    if layers and backends:
        width = 0.8 / len(backends)
        for i, b in enumerate(backends):
            vals = []
            for lay in layers:
                t = sum(r["min_s"] for r in convs if r["backend"] == b and r["layer"].split("+")[0] == lay)
                vals.append(t * 1e3)
            axes[0].bar([j + i * width for j in range(len(layers))], vals, width, label=b)
        axes[0].set_xticks([j + 0.4 - width / 2 for j in range(len(layers))])
        axes[0].set_xticklabels(layers, rotation=60, ha="right", fontsize=8)
        axes[0].set_ylabel("conv forward + backward-data, ms")
        axes[0].legend()
    runs = [r for r in results if r["runner"] in ("numba", "minigrad", "torch")]
    if runs:
        labels = [f"{r['network']}\n{r['runner']}\n{r.get('threads')} thr" for r in runs]
        axes[1].bar(range(len(runs)), [r["forward_backward"]["min_s"] * 1e3 for r in runs], color="tab:gray",
                    label="forward + backward to input")
        axes[1].bar(range(len(runs)), [r["forward"]["min_s"] * 1e3 for r in runs], color="tab:blue", label="forward")
        axes[1].set_xticks(range(len(runs)))
        axes[1].set_xticklabels(labels, fontsize=7, rotation=90)
        axes[1].set_ylabel("ms (batch 1, 224x224, float32)")
        axes[1].legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def main(argv=None):
    args = parse_args(sys.argv[1:] if argv is None else argv)
    os.makedirs(args.out, exist_ok=True)
    started = time.time()
    report = {"machine": env.describe(), "suites": args.suite, "repeats": args.repeats}
    print(f"machine: {report['machine']['cpu']}, {report['machine']['cores']} cores; "
          f"numpy {report['machine']['numpy']}, numba {report['machine'].get('numba', '-')}, "
          f"torch {report['machine'].get('torch', '-')}")
    print(f"BLAS: {report['machine']['blas']}; env: {report['machine']['env'] or 'no OPENBLAS_* / thread variables set'}")
    sgemm = env.sgemm_rate(repeats=args.repeats)
    report["sgemm_gflops"] = sgemm
    print(f"sgemm (2048^3 float32 numpy.matmul): {sgemm:.1f} GFLOP/s")

    kernel_rows = []
    if "kernels" in args.suite:
        backends = kernel_suite.available_backends(args.backends)
        print(f"\n== kernels (backends: {', '.join(backends)}) ==")
        kernel_rows = kernel_suite.run(args.repeats, backends, sgemm, reference_repeats=args.reference_repeats)
    report["kernels"] = kernel_rows

    nets = [s for s in args.suite if s in ("vgg16", "alexnet")]
    results = []
    if nets:
        print("\n== end to end (each runner in its own process) ==")
        for threads in args.threads:
            results += network_suite.run(nets, args.runners, args.repeats, reference_repeats=args.reference_repeats,
                                         threads=threads)
        print()
        print("\n".join(ratio_table(results)))
    report["networks"] = results
    report["elapsed_s"] = time.time() - started

    json_path = os.path.join(args.out, "results.json")
    with open(json_path, "w", encoding="utf-8") as f:
        json.dump(report, f, indent=1)
    png = chart(results, kernel_rows, os.path.join(args.out, "results.png"))
    print(f"\nwrote {json_path}" + (f" and {png}" if png else " (install matplotlib for the chart)"))


if __name__ == "__main__":
    main()
