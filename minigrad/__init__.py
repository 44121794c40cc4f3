"""minigrad: a small autodiff framework on NumPy (CPU) and CuPy (GPU) for backprop-to-image.

Importing it needs NumPy alone; Numba, CuPy, Pillow and matplotlib are imported where used.
"""

from minigrad import functional, models, nn, optim
from minigrad.backend import get_array_module, get_backend, set_backend
from minigrad.config import enable_grad, is_grad_enabled, no_grad, relu_backward
from minigrad.ops import concatenate, matmul, stack
from minigrad.seeding import manual_seed, random_generator
from minigrad.tensor import Function, Tensor, tensor

__all__ = [
    "Function", "Tensor", "concatenate", "models", "nn", "optim", "enable_grad", "functional", "get_array_module", "get_backend",
    "is_grad_enabled", "manual_seed", "matmul", "no_grad", "random_generator", "relu_backward", "set_backend",
    "stack", "tensor",
]
