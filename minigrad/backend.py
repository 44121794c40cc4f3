"""Where arrays live and which kernels run on them.

One code path serves NumPy and CuPy (Chainer's idea): op code asks ``get_array_module(a)``
for ``xp`` and writes ``xp.exp(a)``; only the kernels differ, and ``kernels_for(a)`` picks
them: CuPy's for a ``cupy.ndarray``, otherwise the CPU backend chosen by ``set_backend`` or
``$MINIGRAD_BACKEND`` (Numba when it imports, else the NumPy reference). CuPy is imported
only when a CuPy array or the "cuda" device is asked for.
"""

import contextlib
import sys

import numpy as np

import kernels

_state = {"cpu_backend": None}


def _cupy_if_loaded():
    """The cupy module if something already imported it, without importing it ourselves."""
    return sys.modules.get("cupy")


def import_cupy():
    """Import CuPy, or explain how to get it."""
    try:
        import cupy
    except ImportError as error:
        raise RuntimeError(
            'the "cuda" device needs CuPy: install it with pip install -e ".[gpu]" '
            f"(import failed: {error})"
        ) from error
    try:
        cupy.cuda.runtime.getDeviceCount()
    except Exception as error:
        raise RuntimeError(f'the "cuda" device was asked for, but CuPy finds no CUDA device ({error})') from error
    return cupy


def is_cupy_array(array):
    cupy = _cupy_if_loaded()
    return cupy is not None and isinstance(array, cupy.ndarray)


def get_array_module(*arrays):
    """``cupy`` if any argument is a CuPy array, else ``numpy``."""
    for array in arrays:
        if is_cupy_array(array):
            return _cupy_if_loaded()
    return np


def device_of(array):
    return "cuda" if is_cupy_array(array) else "cpu"


def check_same_device(name, arrays):
    """Refuse a mix of NumPy and CuPy arrays with a message that says how to fix it."""
    devices = {device_of(a) for a in arrays if a is not None}
    if len(devices) > 1:
        raise TypeError(
            f"{name} got both NumPy (cpu) and CuPy (cuda) arrays; move every input to one "
            f"device with .to('cpu') or .to('cuda')"
        )


def to_device(array, device):
    """Copy ``array`` to "cpu" (NumPy) or "cuda" (CuPy); no copy when it is already there."""
    if device not in ("cpu", "cuda"):
        raise ValueError(f'unknown device {device!r}; use "cpu" or "cuda"')
    if device == device_of(array):
        return array
    if device == "cpu":
        return array.get()
    return import_cupy().asarray(array)


def copy_into(target, source):
    """``target[...] = source``, converting dtype and moving ``source`` to ``target``'s device."""
    device = device_of(target)
    if device_of(source) != device:
        source = to_device(source, device)
    target[...] = source


def set_backend(name):
    """Choose the CPU kernels: "numba", "reference", or None for the default.

    The default is $MINIGRAD_BACKEND if set, else Numba when it imports, else the NumPy
    reference. Arrays on the GPU always use the CuPy kernels.
    """
    if name is not None and name not in ("numba", "reference"):
        raise ValueError(f"unknown CPU backend {name!r}; use 'numba', 'reference' or None")
    if name is not None:
        kernels.load(name)
    _state["cpu_backend"] = name


@contextlib.contextmanager
def using_backend(name):
    """Run the block on the CPU kernels ``name``, then restore the previous choice."""
    previous = _state["cpu_backend"]
    set_backend(name)
    try:
        yield
    finally:
        _state["cpu_backend"] = previous


def get_backend():
    """The name of the CPU kernel backend in use."""
    return _state["cpu_backend"] or kernels.default_cpu_backend()


def kernels_for(array):
    """The kernel module that computes on ``array``."""
    if is_cupy_array(array):
        return kernels.load("cupy")
    return kernels.load(get_backend())
