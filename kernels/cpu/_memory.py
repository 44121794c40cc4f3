"""Keep freed large blocks in the process, so new activations do not page-fault (glibc only).

Every kernel returns a freshly allocated array, as the contract requires: a VGG16 forward +
backward allocates about 120 MB of activations and gradients, in blocks of up to 13 MB. By
default glibc's malloc serves blocks that large with a fresh ``mmap`` and gives them back to
the operating system on ``free`` (its dynamic threshold stops at 32 MB, and it trims the heap
top beyond twice that), so every call touches new pages and takes a page fault on each 4 KiB
of them. Measured here (2-core VM, VGG16 forward + backward to the input, 2 threads): 10,900
minor faults per call, 229-249 ms; with the thresholds below, 2 faults and 165-169 ms, peak
memory unchanged (1,312 MB).

``keep_freed_blocks`` raises both thresholds with ``mallopt`` once, when ``kernels.cpu`` is
imported: blocks below ``MMAP_THRESHOLD`` come from the heap and freed ones are reused by the
next allocation instead of being returned. The process keeps what it freed (its resident
size stays near its peak instead of shrinking between calls), which is what PyTorch's and
CuPy's caching allocators do for their own arrays. Setting ``MALLOC_MMAP_THRESHOLD_``,
``MALLOC_TRIM_THRESHOLD_`` or ``MALLOC_TOP_PAD_`` in the environment opts out: a choice made
there stands. Other C libraries (musl, macOS, Windows) are left alone.
"""

import ctypes
import os
import platform

M_TRIM_THRESHOLD = -1
M_MMAP_THRESHOLD = -3
MMAP_THRESHOLD = 512 * 2**20
TRIM_THRESHOLD = 1024 * 2**20
USER_SETTINGS = ("MALLOC_MMAP_THRESHOLD_", "MALLOC_TRIM_THRESHOLD_", "MALLOC_TOP_PAD_")


def keep_freed_blocks():
    """Raise glibc's mmap and trim thresholds (see the module docstring); True if done."""
    if platform.system() != "Linux" or platform.libc_ver()[0] != "glibc":
        return False
    if any(name in os.environ for name in USER_SETTINGS):
        return False
    try:
        mallopt = ctypes.CDLL(None).mallopt
    except (OSError, AttributeError):
        return False
    mallopt.argtypes = (ctypes.c_int, ctypes.c_int)
    return bool(mallopt(M_MMAP_THRESHOLD, MMAP_THRESHOLD)) and bool(mallopt(M_TRIM_THRESHOLD, TRIM_THRESHOLD))
