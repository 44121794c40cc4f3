"""python -m benchmarks [--suite kernels,vgg16,alexnet,batch,training] [--threads 0,1] [--out DIR] ...

Prints, for each kernel and each VGG16/AlexNet layer shape, the time, GFLOP/s and % of the
sgemm rate measured in the same run, for every backend present; then end-to-end VGG16 and
AlexNet forward and forward+backward-to-input times at batch 1 with the ratio to torch and
the peak memory; VGG16 forward at larger batches; and fashion-vgg training throughput. Every
end-to-end figure is a ratio to torch measured in the same run. Writes ``results.json`` and
``results.png`` (matplotlib, when installed) into --out.
"""

import argparse
import json
import os
import sys
import time

from . import env, kernel_suite, network_suite, train_suite

SUITES = ("kernels", "vgg16", "alexnet", "batch", "training")


def parse_args(argv):
    parser = argparse.ArgumentParser(prog="python -m benchmarks", description=__doc__.splitlines()[0])
    parser.add_argument("--suite", default=",".join(SUITES),
                        help="comma-separated suites among: " + ", ".join(SUITES) + " (default: all)")
    parser.add_argument("--repeats", type=int, default=5, help="timed runs per case after one warm-up (default 5)")
    parser.add_argument("--reference-repeats", type=int, default=1,
                        help="timed runs for the slow NumPy reference (default 1)")
    parser.add_argument("--backends", default="reference,numba,torch,cupy",
                        help="kernel backends to time, those absent are skipped (default: all)")
    parser.add_argument("--runners", default="numba,minigrad,torch",
                        help="end-to-end runners: " + ", ".join(network_suite.RUNNERS))
    parser.add_argument("--threads", default="0,1",
                        help="end-to-end thread counts, comma-separated; 0 = the libraries' defaults (default 0,1)")
    parser.add_argument("--batches", default="8,32", help="batch sizes of the VGG16 forward suite (default 8,32)")
    parser.add_argument("--train-steps", type=int, default=20, help="timed training steps per runner (default 20)")
    parser.add_argument("--out", default="bench-results", help="folder for results.json and results.png")
    args = parser.parse_args(argv)
    args.suite = [s.strip() for s in args.suite.split(",") if s.strip()]
    unknown = [s for s in args.suite if s not in SUITES]
    if unknown:
        parser.error(f"unknown suite(s) {', '.join(unknown)}; choose among {', '.join(SUITES)}")
    args.backends = [b.strip() for b in args.backends.split(",") if b.strip()]
    args.runners = [r.strip() for r in args.runners.split(",") if r.strip()]
    try:
        args.threads = [int(t) for t in args.threads.split(",") if t.strip()]
        args.batches = [int(b) for b in args.batches.split(",") if b.strip()]
    except ValueError:
        parser.error("--threads and --batches take comma-separated integers")
    if any(t < 0 for t in args.threads) or any(b < 1 for b in args.batches) or args.repeats < 1 or args.train_steps < 1:
        parser.error("--threads must be >= 0, --batches, --repeats and --train-steps >= 1")
    return args


def _torch_peer(results, r):
    """The torch result measured with the same network, threads and batch as ``r``."""
    for p in results:
        if p["runner"] == "torch" and all(p.get(k) == r.get(k) for k in ("network", "threads", "batch")):
            return p
    return None


def _ratio(value, peer):
    return f"{value / peer:.2f}x" if peer else "-"


def ratio_table(results):
    """Batch-1 rows: forward and forward+backward-to-input time, each with its ratio to torch."""
    lines = ["| network | threads | runner | forward ms | vs torch | fwd+bwd-to-input ms | vs torch | "
             "fwd+bwd CPU ms | vs torch | peak RSS MiB |",
             "|---|---:|---|---:|---:|---:|---:|---:|---:|---:|"]
    for r in results:
        if r.get("batch", 1) != 1 or "forward_backward" not in r:
            continue
        peer = _torch_peer(results, r)
        f, fb, cpu = r["forward"]["min_s"], r["forward_backward"]["min_s"], r["forward_backward"]["min_cpu_s"]
        lines.append(f"| {r['network']} | {r['threads']} | {r['runner']} | {f * 1e3:.0f} | "
                     f"{_ratio(f, peer and peer['forward']['min_s'])} | {fb * 1e3:.0f} | "
                     f"{_ratio(fb, peer and peer['forward_backward']['min_s'])} | {cpu * 1e3:.0f} | "
                     f"{_ratio(cpu, peer and peer['forward_backward']['min_cpu_s'])} | {r['peak_rss_mb']:.0f} |")
    return lines


def batch_table(results):
    """Forward-only rows at batch > 1, with images per second and the ratio to torch."""
    lines = ["| network | batch | threads | runner | forward ms | images/s | vs torch | CPU ms | vs torch | "
             "peak RSS MiB |",
             "|---|---:|---:|---|---:|---:|---:|---:|---:|---:|"]
    for r in results:
        if r.get("batch", 1) == 1:
            continue
        peer = _torch_peer(results, r)
        f, cpu = r["forward"]["min_s"], r["forward"]["min_cpu_s"]
        lines.append(f"| {r['network']} | {r['batch']} | {r['threads']} | {r['runner']} | {f * 1e3:.0f} | "
                     f"{r['batch'] / f:.1f} | {_ratio(f, peer and peer['forward']['min_s'])} | {cpu * 1e3:.0f} | "
                     f"{_ratio(cpu, peer and peer['forward']['min_cpu_s'])} | {r['peak_rss_mb']:.0f} |")
    return lines


def training_table(results):
    lines = ["| model | threads | runner | images/s | median step ms | time vs torch | step CPU ms | vs torch | "
             "peak RSS MiB |",
             "|---|---:|---|---:|---:|---:|---:|---:|---:|"]
    for r in results:
        peer = _torch_peer(results, r)
        lines.append(f"| {r['network']} (batch {r['batch']}, Adam) | {r['threads']} | {r['runner']} | "
                     f"{r['images_per_s']:.0f} | {r['median_step_s'] * 1e3:.0f} | "
                     f"{_ratio(r['median_step_s'], peer and peer['median_step_s'])} | "
                     f"{r['median_step_cpu_s'] * 1e3:.0f} | "
                     f"{_ratio(r['median_step_cpu_s'], peer and peer['median_step_cpu_s'])} | {r['peak_rss_mb']:.0f} |")
    return lines


def _bars(ax, groups, ylabel, title):
    """Grouped bars: ``groups`` is [(group label, [(runner, value, ratio text)])]; each bar is
    labelled with its ratio to torch."""
    runners = list(dict.fromkeys(name for _, bars in groups for name, _, _ in bars))
    width = 0.8 / max(1, len(runners))
    colors = {"numba": "tab:orange", "minigrad": "tab:green", "torch": "tab:blue", "reference": "tab:gray",
              "cupy": "tab:purple"}
    for i, runner in enumerate(runners):
        xs, heights, labels = [], [], []
        for g, (_, bars) in enumerate(groups):
            for name, value, ratio in bars:
                if name == runner:
                    xs.append(g + i * width)
                    heights.append(value)
                    labels.append(ratio)
        drawn = ax.bar(xs, heights, width, label=runner, color=colors.get(runner))
        ax.bar_label(drawn, labels=labels, fontsize=7, padding=2)
    ax.set_xticks([g + 0.4 - width / 2 for g in range(len(groups))])
    ax.set_xticklabels([label for label, _ in groups], fontsize=8, rotation=30, ha="right")
    ax.set_ylabel(ylabel)
    ax.set_title(title, fontsize=10)
    ax.margins(y=0.25)
    ax.legend(fontsize=8)


def chart_panels(results, kernel_rows, training):
    """[(groups, ylabel, title)] for every suite that produced numbers: an empty suite gets no panel."""
    panels = []
    convs = [r for r in kernel_rows if r["kernel"] in ("conv2d_forward", "conv2d_backward_data")]
    layers = list(dict.fromkeys(r["layer"].split("+")[0] for r in convs))
    if layers:
        groups = []
        for layer in layers:
            totals = {}
            for r in convs:
                if r["layer"].split("+")[0] == layer:
                    totals[r["backend"]] = totals.get(r["backend"], 0.0) + r["min_s"] * 1e3
            peer = totals.get("torch")
            groups.append((layer, [(b, v, _ratio(v, peer)) for b, v in totals.items() if b != "reference"]))
        panels.append((groups, "conv forward + backward-data, ms", "per layer shape (ratio to torch)"))
    one = [r for r in results if r.get("batch", 1) == 1 and "forward_backward" in r]
    keys = list(dict.fromkeys((r["network"], r["threads"]) for r in one))
    if keys:
        groups = []
        for net, threads in keys:
            bars = []
            for r in one:
                if (r["network"], r["threads"]) == (net, threads):
                    peer = _torch_peer(results, r)
                    v = r["forward_backward"]["min_s"] * 1e3
                    bars.append((r["runner"], v, _ratio(v, peer and peer["forward_backward"]["min_s"] * 1e3)))
            groups.append((f"{net}, {threads} thr", bars))
        panels.append((groups, "ms", "forward + backward to the input, batch 1, 224x224"))
    many = [r for r in results if r.get("batch", 1) > 1]
    keys = list(dict.fromkeys((r["network"], r["batch"], r["threads"]) for r in many))
    if keys:
        groups = []
        for net, batch, threads in keys:
            bars = []
            for r in many:
                if (r["network"], r["batch"], r["threads"]) == (net, batch, threads):
                    peer = _torch_peer(results, r)
                    v = r["forward"]["min_s"] * 1e3
                    bars.append((r["runner"], v, _ratio(v, peer and peer["forward"]["min_s"] * 1e3)))
            groups.append((f"{net} batch {batch}, {threads} thr", bars))
        panels.append((groups, "ms", "forward without gradients"))
    if training:
        keys = list(dict.fromkeys(r["threads"] for r in training))
        groups = []
        for threads in keys:
            bars = []
            for r in training:
                if r["threads"] == threads:
                    peer = _torch_peer(training, r)
                    v = r["median_step_s"] * 1e3
                    bars.append((r["runner"], v, _ratio(v, peer and peer["median_step_s"] * 1e3)))
            groups.append((f"fashion-vgg, {threads} thr", bars))
        panels.append((groups, "ms per step", "training step, batch 128, Adam"))
    return panels


def caption(machine):
    """The line under the chart: the machine and the BLAS kernels the GEMMs ran on (and the
    warning when an environment variable held them back), since the ratios depend on both."""
    text = (f"{machine['cpu']}, {machine['cores']} cores; {env.blas_summary(machine)}; numpy {machine['numpy']}, "
            f"torch {machine.get('torch', '-')}")
    warning = env.blas_caveat(machine)
    return text + (f"\n{warning}" if warning else "")


def chart(results, kernel_rows, training, path, note=None):
    """One panel per suite that ran; every bar carries its time ratio to torch; ``note`` (the
    machine, from ``caption``) is written under the panels."""
    panels = chart_panels(results, kernel_rows, training)
    if not panels:
        return None
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return None
    widths = [max(2, len(groups)) for groups, _, _ in panels]
    fig, axes = plt.subplots(1, len(panels), figsize=(min(24, 2 + 1.3 * sum(widths)), 6),
                             gridspec_kw={"width_ratios": widths}, squeeze=False)
    for ax, (groups, ylabel, title) in zip(axes[0], panels):
        _bars(ax, groups, ylabel, title)
    if note:
        fig.text(0.01, 0.01, note, fontsize=7, va="bottom", wrap=True)
    fig.tight_layout(rect=(0, 0.07 if note else 0, 1, 1))
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def main(argv=None):
    args = parse_args(sys.argv[1:] if argv is None else argv)
    os.makedirs(args.out, exist_ok=True)
    started = time.time()
    report = {"machine": env.describe(), "load_average": env.load_average(), "suites": args.suite,
              "repeats": args.repeats}
    print(f"machine: {report['machine']['cpu']}, {report['machine']['cores']} cores; "
          f"numpy {report['machine']['numpy']}, numba {report['machine'].get('numba', '-')}, "
          f"torch {report['machine'].get('torch', '-')}; load average {report['load_average']}")
    print(f"BLAS: {report['machine']['blas']}; env: {report['machine']['env'] or 'no OPENBLAS_* / thread variables set'}")
    caveat = env.blas_caveat(report["machine"])
    if caveat:
        print(f"note: {caveat}")
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
    if nets or "batch" in args.suite:
        print("\n== end to end (each runner in its own process) ==")
    for threads in args.threads:
        if nets:
            results += network_suite.run(nets, args.runners, args.repeats, reference_repeats=args.reference_repeats,
                                         threads=threads)
        if "batch" in args.suite:
            for batch in args.batches:
                results += network_suite.run(["vgg16"], [r for r in args.runners if r != "reference"],
                                             max(1, min(args.repeats, 3)), threads=threads, batch=batch)
    training = []
    if "training" in args.suite:
        print("\n== training ==")
        for threads in args.threads:
            training += train_suite.run(args.train_steps, threads)
    for table in (ratio_table(results), batch_table(results), training_table(training)):
        if len(table) > 2:
            print()
            print("\n".join(table))
    report["networks"] = results
    report["training"] = training
    report["load_average_after"] = env.load_average()
    report["elapsed_s"] = time.time() - started

    json_path = os.path.join(args.out, "results.json")
    with open(json_path, "w", encoding="utf-8") as f:
        json.dump(report, f, indent=1)
    png = chart(results, kernel_rows, training, os.path.join(args.out, "results.png"), caption(report["machine"]))
    print(f"\nload average after: {report['load_average_after']}")
    print(f"wrote {json_path}" + (f" and {png}" if png else " (no chart: nothing measured, or no matplotlib)"))


if __name__ == "__main__":
    main()
