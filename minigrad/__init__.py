"""minigrad: a small autodiff framework on NumPy (CPU) and CuPy (GPU) for backprop-to-image.

Importing it needs NumPy alone; Numba, CuPy, Pillow and matplotlib are imported where used, and
``minigrad.models`` (with the checkpoint machinery of ``weights``) on first use.
"""

import importlib

from minigrad import functional, nn, optim
from minigrad.backend import get_array_module, get_backend, set_backend
from minigrad.config import enable_grad, is_grad_enabled, no_grad, relu_backward
from minigrad.function import Function
from minigrad.gradcheck import GradcheckError, gradcheck
from minigrad.ops import concatenate, matmul, stack
from minigrad.seeding import manual_seed, random_generator
from minigrad.tensor import Tensor, tensor

__all__ = [
    "Function", "GradcheckError", "Tensor", "concatenate", "enable_grad", "functional", "get_array_module",
    "get_backend", "gradcheck", "is_grad_enabled", "manual_seed", "matmul", "models", "nn", "no_grad", "optim",
    "random_generator", "relu_backward", "set_backend", "stack", "tensor",
]


def __getattr__(name):
    """``minigrad.models`` is imported when first used, so ``import minigrad`` stays light."""
    if name == "models":
        return importlib.import_module("minigrad.models")
    raise AttributeError(f"module 'minigrad' has no attribute {name!r}")
