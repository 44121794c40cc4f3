"""Importing kernels.cpu keeps freed large blocks for reuse (glibc), unless the user chose."""

import os
import platform
import subprocess
import sys

import pytest

pytestmark = pytest.mark.skipif(platform.system() != "Linux" or platform.libc_ver()[0] != "glibc",
                                reason="the malloc thresholds are glibc's")

# A forward pass's pattern: several activation-sized blocks alive at once, then all freed
# (numpy's transparent-huge-page advice off, so that a fault is one 4 KiB page).
FAULTS_PER_CALL = """
import resource
import numpy as np
try:
    from numpy._core.multiarray import _set_madvise_hugepage
except ImportError:  # NumPy 1.x
    from numpy.core.multiarray import _set_madvise_hugepage
import kernels.cpu
_set_madvise_hugepage(False)
def call():
    blocks = [np.ones(mb * 2**18, np.float32) for mb in (13, 6, 20, 3, 9, 13)]
for _ in range(3):
    call()
start = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
for _ in range(10):
    call()
print((resource.getrusage(resource.RUSAGE_SELF).ru_minflt - start) // 10)
"""


def _faults_per_allocation(**env):
    clean = {k: v for k, v in os.environ.items() if not k.startswith("MALLOC_")}
    out = subprocess.run([sys.executable, "-c", FAULTS_PER_CALL], env={**clean, **env}, capture_output=True,
                         text=True, check=True, cwd=os.path.dirname(os.path.dirname(os.path.dirname(__file__))))
    return int(out.stdout.split()[-1])


def test_freed_activation_blocks_are_reused_without_page_faults():
    # 64 MB is 16,400 pages: returned to the system and mapped afresh, each would fault
    assert _faults_per_allocation() < 100


def test_the_users_malloc_settings_stand():
    assert _faults_per_allocation(MALLOC_TOP_PAD_="0") > 10000
