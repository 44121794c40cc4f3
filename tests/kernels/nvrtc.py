"""Compile CUDA source with NVRTC on a machine without a GPU.

NVRTC (the CUDA runtime compiler) is a plain library: it turns CUDA C++ into PTX or a
cubin without a driver or a device. Two ways in, tried in order:

* CuPy's own binding, ``cupy.cuda.nvrtc`` (the one ``cupy.RawModule`` uses on a device).
  CuPy's higher-level ``compile_using_nvrtc`` is not usable here: it asks the driver for
  the current device's architecture first and fails without one.
* ``libnvrtc.so`` loaded with ctypes, found in an ``nvidia-cuda-nvrtc-cu12``/``-cu13``
  wheel's folder on ``sys.path``, under ``$CUDA_PATH``/``$CUDA_HOME``/``/usr/local/cuda*``,
  or wherever the dynamic loader finds ``libnvrtc``.

``compile_source`` returns the compiled image and the compiler's log; ``backend()`` says
which route is in use, or None when no NVRTC library can be found (tests then skip).
"""

import ctypes
import ctypes.util
import glob
import os
import sys


class NVRTCError(RuntimeError):
    """The source did not compile; the message holds NVRTC's log."""


class _CupyNVRTC:
    name = "cupy.cuda.nvrtc"

    def __init__(self):
        from cupy.cuda import nvrtc  # noqa: PLC0415 -- optional dependency

        self._nvrtc = nvrtc
        self.version = tuple(nvrtc.getVersion())  # raises when CuPy finds no libnvrtc

    def compile(self, source, filename, options, cubin):
        nvrtc = self._nvrtc
        program = nvrtc.createProgram(source, filename, [], [])
        try:
            try:
                nvrtc.compileProgram(program, list(options))
            except nvrtc.NVRTCError as error:
                raise NVRTCError(f"{filename}: {error}\n{nvrtc.getProgramLog(program)}") from None
            log = nvrtc.getProgramLog(program)
            image = nvrtc.getCUBIN(program) if cubin else nvrtc.getPTX(program)
        finally:
            nvrtc.destroyProgram(program)
        return bytes(image), log


def _library_candidates():
    """Paths that may hold libnvrtc, most specific first."""
    patterns = []
    for root in sys.path:
        patterns.append(os.path.join(root, "nvidia", "cuda_nvrtc", "lib", "libnvrtc.so*"))
        patterns.append(os.path.join(root, "nvidia", "cu1*", "lib", "libnvrtc.so*"))
    for variable in ("CUDA_PATH", "CUDA_HOME"):
        if os.environ.get(variable):
            patterns.append(os.path.join(os.environ[variable], "lib64", "libnvrtc.so*"))
    patterns += ["/usr/local/cuda*/lib64/libnvrtc.so*", "/usr/local/cuda*/targets/*/lib/libnvrtc.so*"]
    found = []
    for pattern in patterns:
        found += sorted(p for p in glob.glob(pattern) if "builtins" not in os.path.basename(p))
    system = ctypes.util.find_library("nvrtc")
    if system:
        found.append(system)
    return found


class _CtypesNVRTC:
    name = "libnvrtc via ctypes"

    def __init__(self):
        errors = []
        for path in _library_candidates():
            try:
                self._lib = ctypes.CDLL(path)
                break
            except OSError as error:
                errors.append(f"{path}: {error}")
        else:
            raise OSError("no loadable libnvrtc found" + "".join(f"\n  {e}" for e in errors))
        self.path = path
        lib = self._lib
        lib.nvrtcGetErrorString.restype = ctypes.c_char_p
        major, minor = ctypes.c_int(), ctypes.c_int()
        self._check(lib.nvrtcVersion(ctypes.byref(major), ctypes.byref(minor)), "nvrtcVersion")
        self.version = (major.value, minor.value)

    def _check(self, status, what):
        if status != 0:
            raise NVRTCError(f"{what} failed: {self._lib.nvrtcGetErrorString(status).decode()}")

    def _read(self, program, size_fn, get_fn):
        size = ctypes.c_size_t()
        self._check(size_fn(program, ctypes.byref(size)), "size query")
        buffer = ctypes.create_string_buffer(size.value)
        self._check(get_fn(program, buffer), "read")
        return buffer.raw[: size.value]

    def compile(self, source, filename, options, cubin):
        lib = self._lib
        program = ctypes.c_void_p()
        self._check(
            lib.nvrtcCreateProgram(ctypes.byref(program), source.encode(), filename.encode(), 0, None, None),
            "nvrtcCreateProgram",
        )
        try:
            encoded = [o.encode() for o in options]
            array = (ctypes.c_char_p * len(encoded))(*encoded)
            status = lib.nvrtcCompileProgram(program, len(encoded), array)
            log = self._read(program, lib.nvrtcGetProgramLogSize, lib.nvrtcGetProgramLog)
            log = log.rstrip(b"\0").decode(errors="replace")
            if status != 0:
                raise NVRTCError(f"{filename}: {lib.nvrtcGetErrorString(status).decode()}\n{log}")
            if cubin:
                image = self._read(program, lib.nvrtcGetCUBINSize, lib.nvrtcGetCUBIN)
            else:
                image = self._read(program, lib.nvrtcGetPTXSize, lib.nvrtcGetPTX)
        finally:
            lib.nvrtcDestroyProgram(ctypes.byref(program))
        return image, log


_BACKEND = None
_REASONS = []


def backend():
    """The NVRTC route in use (an object with .name, .version, .compile), or None."""
    global _BACKEND
    if _BACKEND is None and not _REASONS:
        for factory in (_CupyNVRTC, _CtypesNVRTC):
            try:
                _BACKEND = factory()
                break
            except Exception as error:  # ImportError, OSError, CuPy's errors for a missing library
                _REASONS.append(f"{factory.name}: {type(error).__name__}: {error}")
    return _BACKEND


def unavailable_reason():
    """Why no NVRTC could be loaded (for a skip message)."""
    backend()
    return "no NVRTC library found; install nvidia-cuda-nvrtc-cu12 (or a CUDA toolkit). Tried: " + "; ".join(
        _REASONS
    )


def compile_source(source, filename, arch, options=()):
    """Compile ``source`` for ``arch`` ("compute_XX" gives PTX, "sm_XX" a cubin).

    Returns (image bytes, log text); raises NVRTCError with the log when it fails."""
    route = backend()
    if route is None:
        raise NVRTCError(unavailable_reason())
    return route.compile(source, filename, (*options, f"-arch={arch}"), cubin=arch.startswith("sm_"))
