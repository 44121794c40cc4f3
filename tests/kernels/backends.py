"""Every kernel backend behind one interface, for tests that hold all of them to one property.

``backend(name)`` gives the contract functions of "reference" (kernels.reference), "numba"
(kernels.cpu), "emulated" (kernels/gpu's host code and CUDA sources compiled for the CPU by
``cuda_emulation``) or "cupy" (the same on a CUDA device), with ``put`` (NumPy -> the
backend's arrays) and ``get`` (back to NumPy). ``BACKENDS`` holds them as pytest parameters
that skip where a backend cannot run (no Numba, no C++ compiler, no GPU).
"""

import importlib.util

import pytest
from hypothesis import strategies as st

import kernels
from tests.kernels import cuda_emulation


def _cuda_device():
    """True when CuPy imports and sees at least one CUDA device."""
    try:
        import cupy

        return cupy.cuda.runtime.getDeviceCount() > 0
    except Exception:  # no cupy, no driver, no device: all mean "no GPU here"
        return False


HAS_DEVICE = _cuda_device()
needs_device = [pytest.mark.gpu, pytest.mark.skipif(not HAS_DEVICE, reason="needs CuPy and a CUDA device")]
needs_compiler = pytest.mark.skipif(
    cuda_emulation.find_compiler() is None, reason="CUDA emulation needs a host C++ compiler (g++)"
)
needs_numba = pytest.mark.skipif(importlib.util.find_spec("numba") is None, reason="needs Numba")
DEVICES = [
    pytest.param("emulated", marks=needs_compiler),
    pytest.param("cupy", marks=needs_device),
]
BACKENDS = [pytest.param("reference"), pytest.param("numba", marks=needs_numba), *DEVICES]


class Backend:
    """The contract functions of one backend, with ``put`` (NumPy -> backend array) and
    ``get`` (backend array -> NumPy). ``launch`` options apply to the GPU backends."""

    def __init__(self, device, **launch):
        self.device = device
        self.put = self.get = lambda a: a
        if device in ("reference", "numba"):
            self.fns = kernels.load(device)
        elif device == "emulated":
            self.fns, self.runtime = cuda_emulation.emulated_backend(**launch)
        else:
            import cupy
            from kernels.gpu import CupyRuntime

            self.runtime = CupyRuntime()
            for key, value in launch.items():
                if key in ("block", "max_blocks", "col_budget_bytes"):
                    setattr(self.runtime, key, value)
            self.fns = cuda_emulation.load_host().bind(self.runtime)
            self.put = cupy.asarray
            self.get = cupy.asnumpy

    def __getattr__(self, name):
        return getattr(self.fns, name)


# Launch geometries: the production one, and small ones that make each thread loop over
# several elements, put all the work on one thread, or cut the images into chunks.
launch_options = st.fixed_dictionaries(
    {
        "block": st.sampled_from([1, 3, 32, 256]),
        "max_blocks": st.sampled_from([1, 2, 7, 65535]),
        "col_budget_bytes": st.sampled_from([1, 2000, 256 * 2**20]),
        "reverse": st.booleans(),
    }
)


def backend(device, launch=None):
    """The Backend ``device`` ("reference", "numba", "emulated", "cupy") with ``launch`` options."""
    launch = dict(launch or {})
    if device == "cupy":
        launch.pop("reverse", None)
    return Backend(device, **launch)
