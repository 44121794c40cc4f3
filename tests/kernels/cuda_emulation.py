"""Run CUDA kernels on the CPU: the .cu sources compiled by the host C++ compiler.

Most machines that develop and test minigrad have no GPU. This harness lets the *same*
CUDA source files that ``cupy.RawModule`` compiles for a device run on the CPU instead,
so that their logic can be held to ``kernels.reference`` anywhere:

1. ``SHIM`` (a few lines prepended to each source) turns CUDA C++ into host C++:
   ``threadIdx``/``blockIdx``/``blockDim``/``gridDim`` become thread-local variables,
   ``__global__``/``__device__``/``__forceinline__`` become plain (inline) functions,
   ``atomicAdd`` becomes a plain add, and ``__syncthreads``/``__shared__`` are refused:
   threads run one after another, which cannot honour a barrier.
2. For every ``extern "C" __global__`` entry point a C launcher is generated that sets the
   index variables and calls the kernel once per thread of the grid, in order or in
   reverse order. Correct kernels of the kind written here (each output written by one
   thread, no inter-thread communication) give the same bits in either order and for
   any grid; a race between threads usually shows up as a difference.
3. The whole translation unit is compiled to a shared library with warnings as errors,
   cached under the temp directory by the SHA-256 of its text and the compile command,
   so an unchanged source is compiled once per machine, not once per test run.
4. ``EmulatedKernel.__call__(grid, block, args)`` takes the arguments a CuPy RawKernel
   would, with NumPy arrays in place of CuPy arrays, and checks them as strictly as the
   device would need: pointer arguments must be C-contiguous arrays of exactly the
   pointee's dtype, scalars must have exactly the parameter's C type (a Python int is a
   ``long long``, a Python float a ``double``, as CuPy passes them). Each array is copied
   into a buffer with guard bands of 0xFF bytes (NaN for floats) on both sides: a kernel
   writing out of bounds fails the guard check, one reading out of bounds picks up NaNs.
   Writable buffers can also be poisoned with 0xFF before the launch, so an output
   element a kernel forgets to write comes back as NaN (or -1).

``EmulatedRuntime`` plugs this into ``kernels/gpu/host.py``: ``host.bind(EmulatedRuntime())``
is the GPU backend with NumPy arrays, NumPy GEMMs and emulated kernels.
"""

import ctypes
import hashlib
import importlib.util
import os
import re
import shutil
import subprocess
import sys
import tempfile

import numpy as np

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
GPU_DIR = os.path.join(REPO_ROOT, "kernels", "gpu")

SHIM = r"""
// ---- CUDA-on-CPU shim (tests/kernels/cuda_emulation.py) ----
#include <math.h>
#include <stdio.h>
#include <stdlib.h>

struct dim3 { unsigned int x, y, z; };
typedef dim3 uint3;
static thread_local uint3 threadIdx, blockIdx;
static thread_local dim3 blockDim, gridDim;

#define __global__
#define __device__
#define __host__
#define __forceinline__ inline
#define __shared__ __shared___is_not_supported_by_the_sequential_emulator

static inline void __syncthreads(void)
{
    fprintf(stderr, "cuda_emulation: __syncthreads cannot be emulated by sequential threads\n");
    abort();
}

template <typename T> static inline T atomicAdd(T* address, T value)
{
    T old = *address;
    *address = old + value;
    return old;
}
// ---- end of shim ----
"""

_ENTRY_POINT = re.compile(r'extern\s+"C"\s+__global__\s+void\s+(\w+)\s*\(([^)]*)\)')

# C parameter base type -> (NumPy dtype, ctypes type)
_C_TYPES = {
    "float": (np.dtype(np.float32), ctypes.c_float),
    "double": (np.dtype(np.float64), ctypes.c_double),
    "unsigned char": (np.dtype(np.uint8), ctypes.c_ubyte),
    "unsigned short": (np.dtype(np.uint16), ctypes.c_ushort),
    "int": (np.dtype(np.int32), ctypes.c_int),
    "unsigned int": (np.dtype(np.uint32), ctypes.c_uint),
    "long long": (np.dtype(np.int64), ctypes.c_longlong),
    "unsigned long long": (np.dtype(np.uint64), ctypes.c_ulonglong),
    "bool": (np.dtype(np.bool_), ctypes.c_bool),
}
# What CuPy passes for a Python scalar: int -> long long, float -> double, bool -> bool.
_PYTHON_SCALARS = {bool: "bool", int: "long long", float: "double"}

GUARD_BYTES = 64


class EmulationError(RuntimeError):
    """A kernel call the device would reject or that broke memory safety under emulation."""


def find_compiler():
    """The host C++ compiler: $CXX, else g++, else c++; None when there is none."""
    for candidate in (os.environ.get("CXX"), "g++", "c++"):
        if candidate and shutil.which(candidate):
            return shutil.which(candidate)
    return None


def cache_dir():
    """Where compiled emulation libraries are kept: $MINIGRAD_CUDA_EMULATION_CACHE or a
    folder under the temp directory."""
    path = os.environ.get("MINIGRAD_CUDA_EMULATION_CACHE") or os.path.join(
        tempfile.gettempdir(), "minigrad-cuda-emulation"
    )
    os.makedirs(path, exist_ok=True)
    return path


class Parameter:
    """One kernel parameter parsed from its declaration, e.g. ``const float* __restrict__ x``."""

    def __init__(self, declaration):
        declaration = " ".join(declaration.split())
        match = re.fullmatch(r"(.*?)\s*\b(\w+)", declaration)
        if not match:
            raise EmulationError(f"cannot parse kernel parameter {declaration!r}")
        type_text, self.name = match.group(1), match.group(2)
        self.declaration = declaration
        self.pointer = "*" in type_text
        words = type_text.replace("*", " ").split()
        self.const = "const" in words
        base = " ".join(w for w in words if w not in ("const", "__restrict__", "volatile"))
        if base not in _C_TYPES:
            raise EmulationError(f"kernel parameter type {type_text!r} is not supported by the emulator")
        self.base = base
        self.dtype, self.ctype = _C_TYPES[base]

    @property
    def argtype(self):
        return ctypes.c_void_p if self.pointer else self.ctype


def parse_entry_points(source):
    """{name: [Parameter, ...]} for every ``extern "C" __global__`` function in ``source``."""
    kernels = {}
    for match in _ENTRY_POINT.finditer(source):
        body = match.group(2).strip()
        params = [] if body in ("", "void") else [Parameter(p) for p in body.split(",")]
        kernels[match.group(1)] = params
    return kernels


def _launcher(name, params):
    """C source of ``emu_launch_<name>``: run kernel ``name`` once per thread of the grid."""
    declarations = "".join(f", {p.declaration}" for p in params)
    arguments = ", ".join(p.name for p in params)
    return f"""
extern "C" void emu_launch_{name}(unsigned int emu_gx, unsigned int emu_gy, unsigned int emu_gz,
                                  unsigned int emu_bx, unsigned int emu_by, unsigned int emu_bz,
                                  int emu_reverse{declarations})
{{
    gridDim.x = emu_gx; gridDim.y = emu_gy; gridDim.z = emu_gz;
    blockDim.x = emu_bx; blockDim.y = emu_by; blockDim.z = emu_bz;
    const long long emu_threads = (long long)emu_bx * emu_by * emu_bz;
    const long long emu_count = emu_threads * emu_gx * emu_gy * emu_gz;
    for (long long emu_t = 0; emu_t < emu_count; ++emu_t) {{
        const long long emu_u = emu_reverse ? emu_count - 1 - emu_t : emu_t;
        const long long emu_block = emu_u / emu_threads, emu_thread = emu_u % emu_threads;
        blockIdx.x = (unsigned int)(emu_block % emu_gx);
        blockIdx.y = (unsigned int)((emu_block / emu_gx) % emu_gy);
        blockIdx.z = (unsigned int)(emu_block / ((long long)emu_gx * emu_gy));
        threadIdx.x = (unsigned int)(emu_thread % emu_bx);
        threadIdx.y = (unsigned int)((emu_thread / emu_bx) % emu_by);
        threadIdx.z = (unsigned int)(emu_thread / ((long long)emu_bx * emu_by));
        {name}({arguments});
    }}
}}
"""


def translation_unit(source, filename="kernel.cu"):
    """The host C++ text for one CUDA source: shim, the source (with #line so compiler
    messages point into the .cu file), and one launcher per entry point."""
    launchers = "".join(_launcher(name, params) for name, params in parse_entry_points(source).items())
    return f'{SHIM}\n#line 1 "{filename}"\n{source}\n// ---- emulation launchers ----\n{launchers}'


COMPILE_FLAGS = ("-std=c++17", "-O2", "-fPIC", "-shared", "-Wall", "-Wextra", "-Werror", "-ffp-contract=off")


def compile_library(source, filename="kernel.cu", compiler=None):
    """Compile ``source`` (CUDA text) into a cached shared library; return its path."""
    compiler = compiler or find_compiler()
    if compiler is None:
        raise EmulationError("no host C++ compiler found (set $CXX or install g++)")
    text = translation_unit(source, filename)
    key = hashlib.sha256("\0".join((compiler, *COMPILE_FLAGS, text)).encode()).hexdigest()[:24]
    stem = re.sub(r"\W", "_", os.path.splitext(os.path.basename(filename))[0])
    library = os.path.join(cache_dir(), f"{stem}-{key}.so")
    if os.path.exists(library):
        return library
    workdir = tempfile.mkdtemp(prefix=f"{stem}-", dir=cache_dir())
    try:
        cpp = os.path.join(workdir, f"{stem}.cpp")
        with open(cpp, "w", encoding="utf-8") as handle:
            handle.write(text)
        built = os.path.join(workdir, f"{stem}.so")
        result = subprocess.run([compiler, *COMPILE_FLAGS, cpp, "-o", built], capture_output=True, text=True)
        if result.returncode != 0:
            raise EmulationError(f"host compilation of {filename} failed:\n{result.stderr}")
        os.replace(built, library)  # atomic: parallel test workers never see half a file
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    return library


def _as_dim3(value):
    if isinstance(value, (int, np.integer)):
        value = (int(value),)
    value = tuple(int(v) for v in value) + (1,) * (3 - len(value))
    if len(value) != 3 or min(value) < 1:
        raise EmulationError(f"grid and block sizes must be 1 to 3 positive ints, got {value}")
    return value


class EmulatedKernel:
    """One entry point of an emulated module, called like a CuPy RawKernel."""

    def __init__(self, library, name, params):
        self.name = name
        self.params = params
        self._launch = getattr(library, f"emu_launch_{name}")
        self._launch.argtypes = [ctypes.c_uint] * 6 + [ctypes.c_int] + [p.argtype for p in params]
        self._launch.restype = None

    def _scalar(self, param, value):
        if isinstance(value, np.generic):
            if value.dtype != param.dtype:
                raise EmulationError(
                    f"{self.name}: {param.name} is a C {param.base} but was passed a {value.dtype} scalar"
                )
            return param.ctype(value.item())
        kind = _PYTHON_SCALARS.get(type(value))
        if kind != param.base:
            raise EmulationError(
                f"{self.name}: {param.name} is a C {param.base} but was passed a Python "
                f"{type(value).__name__} (which CuPy passes as {kind}); pass numpy.{param.dtype}"
            )
        return param.ctype(value)

    def __call__(self, grid, block, args, reverse=False, poison_outputs=False):
        """Run the kernel over ``grid`` x ``block`` threads on NumPy arrays, like
        ``RawKernel.__call__(grid, block, args)``. ``reverse`` runs the threads last to
        first; ``poison_outputs`` fills writable arrays with 0xFF bytes first."""
        grid, block = _as_dim3(grid), _as_dim3(block)
        if len(args) != len(self.params):
            raise EmulationError(f"{self.name} takes {len(self.params)} arguments, got {len(args)}")
        arrays = [(p, a) for p, a in zip(self.params, args, strict=True) if p.pointer]
        for i, (p, a) in enumerate(arrays):
            if not isinstance(a, np.ndarray):
                raise EmulationError(f"{self.name}: {p.name} must be an array, got {type(a).__name__}")
            if a.dtype != p.dtype:
                raise EmulationError(f"{self.name}: {p.name} is a {p.declaration} but the array is {a.dtype}")
            if not a.flags.c_contiguous:
                raise EmulationError(f"{self.name}: {p.name} is not C-contiguous (raw kernels ignore strides)")
            for q, b in arrays[:i]:
                if (not p.const or not q.const) and np.shares_memory(a, b):
                    raise EmulationError(f"{self.name}: {q.name} and {p.name} overlap and one of them is written")
        buffers, c_args = [], []
        for p, a in zip(self.params, args, strict=True):
            if not p.pointer:
                c_args.append(self._scalar(p, a))
                continue
            raw = np.full(a.nbytes + 2 * GUARD_BYTES, 0xFF, dtype=np.uint8)
            inner = raw[GUARD_BYTES : GUARD_BYTES + a.nbytes].view(a.dtype).reshape(a.shape)
            if p.const or not poison_outputs:
                inner[...] = a
            buffers.append((p, a, raw, inner))
            c_args.append(ctypes.c_void_p(raw.ctypes.data + GUARD_BYTES))
        self._launch(*grid, *block, int(bool(reverse)), *c_args)
        for p, a, raw, inner in buffers:
            if (raw[:GUARD_BYTES] != 0xFF).any() or (raw[GUARD_BYTES + a.nbytes :] != 0xFF).any():
                raise EmulationError(f"{self.name} wrote outside {p.name} (guard bytes changed)")
            if p.const:
                if not np.array_equal(inner, a, equal_nan=a.dtype.kind == "f"):
                    raise EmulationError(f"{self.name} changed its const input {p.name}")
            else:
                np.copyto(a, inner)


class EmulatedModule:
    """The emulated counterpart of ``cupy.RawModule(code=source)``."""

    def __init__(self, source, filename="kernel.cu", compiler=None):
        self.filename = filename
        self.path = compile_library(source, filename, compiler)
        self._library = ctypes.CDLL(self.path)
        self.kernels = {
            name: EmulatedKernel(self._library, name, params) for name, params in parse_entry_points(source).items()
        }

    def get_function(self, name):
        try:
            return self.kernels[name]
        except KeyError:
            raise EmulationError(f"{self.filename} has no entry point {name!r}") from None


_HOST = None


def load_host():
    """``kernels/gpu/host.py`` loaded by path, which works without CuPy (importing the
    ``kernels.gpu`` package would need it)."""
    global _HOST
    if _HOST is None:
        name = "minigrad_emulated_gpu_host"
        spec = importlib.util.spec_from_file_location(name, os.path.join(GPU_DIR, "host.py"))
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module
        spec.loader.exec_module(module)
        _HOST = module
    return _HOST


_MODULES = {}


def load_module(filename, compiler=None):
    """The emulated module of one .cu file in kernels/gpu, compiled once per process."""
    path = os.path.join(GPU_DIR, filename)
    with open(path, encoding="utf-8") as handle:
        source = handle.read()
    key = (path, source, compiler)
    if key not in _MODULES:
        _MODULES[key] = EmulatedModule(source, filename, compiler)
    return _MODULES[key]


class EmulatedRuntime:
    """The runtime ``kernels/gpu/host.py`` expects, with NumPy arrays and emulated kernels.

    The launch policy (``block``, ``max_blocks``) and the im2col chunk budget can be set
    small to force grid-stride loops and chunking on tiny test shapes; ``reverse`` runs
    every grid's threads last to first. ``launched`` collects the entry points called."""

    xp = np

    def __init__(self, block=256, max_blocks=65535, col_budget_bytes=256 * 2**20, reverse=False, poison=True):
        self.block = block
        self.max_blocks = max_blocks
        self.col_budget_bytes = col_budget_bytes
        self.reverse = reverse
        self.poison = poison
        self.launched = set()
        host = load_host()
        self._kernels = {}
        for source in host.SOURCES:
            module = load_module(source)
            self._kernels.update(module.kernels)

    def launch(self, name, grid, block, args):
        self.launched.add(name)
        self._kernels[name](grid, block, args, reverse=self.reverse, poison_outputs=self.poison)


def emulated_backend(**runtime_options):
    """(backend, runtime): the contract functions of kernels/gpu running under emulation."""
    runtime = EmulatedRuntime(**runtime_options)
    return load_host().bind(runtime), runtime
