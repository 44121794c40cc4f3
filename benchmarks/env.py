"""The machine and the libraries a benchmark ran on, and the timer every suite uses.

Timings are wall-clock (``time.perf_counter``) around calls that return finished NumPy
arrays (CuPy timings synchronise the device first). Each case runs once to warm up (JIT
compilation, Winograd weight transforms, page faults of first-touch buffers) and then
``repeats`` times; we report the minimum, the least disturbed by other processes on a shared
machine, and the median.
"""

import json
import os
import platform
import time

import numpy as np


def cpu_model():
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def cpu_flags():
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            for line in f:
                if line.startswith("flags"):
                    flags = line.split(":", 1)[1].split()
                    return [f for f in ("avx2", "fma", "avx512f", "avx512_bf16", "amx_tile") if f in flags]
    except OSError:
        pass
    return []


def blas_info():
    """What threadpoolctl reports for the BLAS libraries loaded in this process (the kernel
    architecture OpenBLAS picked, its threads), or None without threadpoolctl."""
    try:
        from threadpoolctl import threadpool_info
    except ImportError:
        return None
    return [
        {k: v for k, v in entry.items() if k in ("internal_api", "architecture", "num_threads", "version", "prefix")}
        for entry in threadpool_info()
    ]


def blas_summary(info):
    """The BLAS that ran, in a few words: library, version, kernel architecture, and the
    ``OPENBLAS_CORETYPE`` that chose it when one was set (e.g. "openblas 0.3.31, Haswell kernels
    (OPENBLAS_CORETYPE=Haswell)")."""
    entries = [e for e in info.get("blas") or [] if e.get("internal_api") in ("openblas", "mkl", "blis")]
    if not entries:
        return "BLAS unknown (threadpoolctl not installed)"
    text = ", ".join(f"{e['internal_api']} {e.get('version') or ''}".rstrip()
                     + (f", {e['architecture']} kernels" if e.get("architecture") else "") for e in entries)
    forced = info.get("env", {}).get("OPENBLAS_CORETYPE")
    return text + (f" (OPENBLAS_CORETYPE={forced})" if forced else "")


def blas_caveat(info):
    """A warning when ``OPENBLAS_CORETYPE`` holds OpenBLAS to kernels older than the CPU's
    (machines set it for OpenBLAS builds that crash on new CPUs): minigrad's products then run
    at a fraction of what NumPy's own choice gives, while torch's oneDNN ignores the variable.
    Measured on an AVX-512 machine: sgemm 1.6-2.3x slower on the convolutions' shapes with
    ``OPENBLAS_CORETYPE=Haswell``. None when there is nothing to say."""
    forced = info["env"].get("OPENBLAS_CORETYPE")
    if not forced or "avx512f" not in info["cpu_flags"]:
        return None
    kernels = [entry.get("architecture") for entry in info["blas"] or [] if entry.get("internal_api") == "openblas"]
    if any(k and k.lower() in ("skylakex", "cooperlake", "sapphirerapids") for k in kernels):
        return None
    return (f"OPENBLAS_CORETYPE={forced} holds OpenBLAS to {', '.join(map(str, kernels)) or 'its'} kernels on a CPU "
            "with AVX-512; minigrad's GEMMs run slower than with NumPy's own choice (torch is not affected). "
            "To compare on equal terms: env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE python -m benchmarks ...")


def describe():
    """A dict naming the machine, the library versions and the thread settings."""
    info = {
        "cpu": cpu_model(),
        "cores": os.cpu_count(),
        "cpu_flags": cpu_flags(),
        "python": platform.python_version(),
        "numpy": np.__version__,
        "env": {k: os.environ[k] for k in ("OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE", "OPENBLAS_NUM_THREADS",
                                           "OMP_NUM_THREADS", "NUMBA_NUM_THREADS", "MKL_NUM_THREADS")
                if k in os.environ},
    }
    try:
        import numba

        info["numba"] = numba.__version__
        info["numba_threads"] = numba.get_num_threads()
        try:
            info["numba_threading_layer"] = numba.threading_layer()
        except ValueError:  # no parallel region has run yet
            info["numba_threading_layer"] = numba.config.THREADING_LAYER
    except ImportError:
        pass
    try:
        import torch

        info["torch"] = torch.__version__
        info["torch_threads"] = torch.get_num_threads()
    except ImportError:
        pass
    info["blas"] = blas_info()
    return info


def measure(fn, repeats, warmup=1, sync=None):
    """Run ``fn`` ``warmup`` times, then ``repeats`` times timed; return a dict of seconds:
    wall-clock min and median, and the process CPU time (all threads) of the fastest run.

    On a machine shared with other work, wall time depends on the load; the CPU time of a
    single-threaded run does not, which makes 1-thread CPU-time ratios the steadier figure."""
    for _ in range(warmup):
        fn()
    if sync:
        sync()
    times, cpu = [], []
    for _ in range(max(1, repeats)):
        start, start_cpu = time.perf_counter(), time.process_time()
        fn()
        if sync:
            sync()
        times.append(time.perf_counter() - start)
        cpu.append(time.process_time() - start_cpu)
    best = int(np.argmin(times))
    return {"min_s": times[best], "median_s": float(np.median(times)), "cpu_s": cpu[best],
            "min_cpu_s": min(cpu), "repeats": len(times)}


def set_threads(n):
    """Limit every thread pool this process may use to ``n`` threads. Call before numpy,
    numba or torch are imported for the environment variables to take full effect."""
    for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "NUMBA_NUM_THREADS"):
        os.environ[var] = str(n)


def sgemm_rate(repeats=5, size=2048):
    """GFLOP/s of a float32 (size x size) @ (size x size) numpy.matmul: the yardstick for "% of sgemm"."""
    rng = np.random.default_rng(0)
    a = rng.standard_normal((size, size), dtype=np.float32)
    b = rng.standard_normal((size, size), dtype=np.float32)
    out = np.empty_like(a)
    t = measure(lambda: np.matmul(a, b, out=out), repeats)
    return 2.0 * size**3 / t["min_s"] / 1e9


def load_average():
    """The 1, 5 and 15 minute load averages (what ``uptime`` prints), or None where unknown:
    timings on a shared machine only mean something next to it."""
    try:
        return [round(v, 2) for v in os.getloadavg()]
    except (AttributeError, OSError):
        return None


def peak_rss_mb():
    """Peak resident memory of this process so far, in MiB.

    On Linux this is VmHWM from /proc/self/status, the high-water mark of this process's own
    address space. (``ru_maxrss`` would do on its own, except that Linux carries the parent's
    peak over a fork + exec: every benchmark subprocess would report at least the resident
    size of ``python -m benchmarks`` itself.)"""
    try:
        with open("/proc/self/status", encoding="ascii") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024.0
    except OSError:
        pass
    import resource

    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / 1024.0 if platform.system() != "Darwin" else peak / 2**20


def write_json(report, path):
    """Write ``report`` to ``path`` as indented JSON when a path was given (``--json FILE``)."""
    if path:
        with open(path, "w", encoding="utf-8") as handle:
            json.dump(report, handle, indent=2)
