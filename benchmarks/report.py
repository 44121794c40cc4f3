"""Markdown tables from a results.json written by ``python -m benchmarks``.

    python -m benchmarks.report bench-results/results.json > table.md

Per layer shape: conv forward and backward-data time for numba and torch with their ratio,
numba's GFLOP/s (direct-convolution count) and % of the sgemm rate of the same run; then the
end-to-end table (wall time ratios and single-threaded CPU-time ratios to torch, peak memory).
"""

import json
import sys


def _index(rows):
    table = {}
    for r in rows:
        table[(r["kernel"], r["layer"], r["backend"])] = r
    return table


def conv_table(report):
    rows = report.get("kernels", [])
    idx = _index(rows)
    layers = list(dict.fromkeys(r["layer"] for r in rows if r["kernel"] == "conv2d_forward"))
    out = ["| layer(s) | shape | kernel | numba ms | torch ms | numba/torch | numba GFLOP/s | % sgemm |",
           "|---|---|---|---:|---:|---:|---:|---:|"]
    for layer in layers:
        for kernel in ("conv2d_forward", "conv2d_backward_data"):
            ours, peer = idx.get((kernel, layer, "numba")), idx.get((kernel, layer, "torch"))
            if not ours:
                continue
            ratio = f"{ours['min_s'] / peer['min_s']:.2f}" if peer else "-"
            peer_ms = f"{peer['min_s'] * 1e3:.1f}" if peer else "-"
            out.append(f"| {layer.replace('+', ', ')} | {ours['shape']} | {kernel.replace('conv2d_', '')} | "
                       f"{ours['min_s'] * 1e3:.1f} | {peer_ms} | {ratio} | {ours['gflops']:.0f} | "
                       f"{ours.get('pct_sgemm', 0):.0f} |")
    return out


def other_kernels_table(report):
    rows = report.get("kernels", [])
    idx = _index(rows)
    keys = list(dict.fromkeys((r["kernel"], r["layer"]) for r in rows if not r["kernel"].startswith("conv2d")))
    out = ["| kernel | layer | numba ms | torch ms | reference ms | numba GB/s |", "|---|---|---:|---:|---:|---:|"]
    for kernel, layer in keys:
        cells = []
        for backend in ("numba", "torch", "reference"):
            r = idx.get((kernel, layer, backend))
            cells.append(f"{r['min_s'] * 1e3:.2f}" if r else "-")
        ours = idx.get((kernel, layer, "numba"))
        rate = f"{ours['gbytes_per_s']:.1f}" if ours and "gbytes_per_s" in ours else "-"
        out.append(f"| {kernel} | {layer} | " + " | ".join(cells) + f" | {rate} |")
    return out


def main(argv=None):
    argv = sys.argv[1:] if argv is None else argv
    path = argv[0] if argv else "bench-results/results.json"
    with open(path, encoding="utf-8") as f:
        report = json.load(f)
    from .__main__ import batch_table, ratio_table, training_table

    m = report["machine"]
    print(f"Machine: {m['cpu']}, {m['cores']} cores; numpy {m['numpy']}, numba {m.get('numba')}, "
          f"torch {m.get('torch')}; BLAS {m.get('blas')}; env {m.get('env')}; sgemm {report['sgemm_gflops']:.0f} "
          f"GFLOP/s; load average {report.get('load_average')} before, {report.get('load_average_after')} after\n")
    for table in (ratio_table(report.get("networks", [])), batch_table(report.get("networks", [])),
                  training_table(report.get("training", []))):
        if len(table) > 2:
            print("\n".join(table))
            print()
    if report.get("networks"):
        for r in report["networks"]:
            if "winograd" in r:
                w = r["winograd"]
                print(f"\n{r['network']}: Winograd float32 vs float64 direct: logits max rel err "
                      f"{w['logits_rel_err']:.1e}, input-gradient max rel err {w['input_grad_rel_err']:.1e} "
                      f"(relative L2 {w['input_grad_rel_l2_err']:.1e})")
        print()
    if report.get("kernels"):
        print("\n".join(conv_table(report)))
        print()
        print("\n".join(other_kernels_table(report)))


if __name__ == "__main__":
    main()
