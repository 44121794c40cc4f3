"""Tensor and reverse-mode autodiff.

A ``Tensor`` wraps one NumPy or CuPy array. Every operation on tensors is a
:class:`~minigrad.function.Function` (``minigrad/function.py``) whose ``apply`` wraps the result
in a Tensor and, when gradients are needed, remembers the context that links it to its inputs.
``Tensor.backward`` walks that graph once in reverse topological order, summing the gradients
of tensors used more than once, running the tensors' hooks, and stores ``.grad`` on the leaves
that require it.
"""

import numpy as np

from collections import OrderedDict

from minigrad import backend
from minigrad.hooks import RemovableHandle


def _ops():
    """:mod:`minigrad.ops`, whose Functions build on Tensor: imported when an operator first runs,
    so that the modules import in one direction (tensor <- function <- ops)."""
    from minigrad import ops

    return ops


def _default_dtype(array):
    """float32 for Python floats and lists of them (NumPy scalars and arrays keep their dtype)."""
    return np.float32 if array.dtype == np.float64 else array.dtype


class Tensor:
    """An n-dimensional array that can record the operations applied to it.

    ``data`` is a ``numpy.ndarray`` or ``cupy.ndarray``; ``grad`` is an array of the same
    shape (or None) filled by ``backward()`` on leaves that require grad, and on any tensor
    after ``retain_grad()``.
    """

    __array_priority__ = 1000  # numpy_array + tensor calls Tensor.__radd__

    def __init__(self, data, requires_grad=False):
        if isinstance(data, Tensor):
            data = data.data
        if isinstance(data, np.generic):
            data = np.asarray(data)
        elif not (isinstance(data, np.ndarray) or backend.is_cupy_array(data)):
            array = np.asarray(data)
            if array.dtype == object:
                raise TypeError(f"cannot make a tensor from {type(data).__name__}: not a numeric array")
            data = array.astype(_default_dtype(array), copy=False)
        self.data = data
        self.grad = None
        self._ctx = None
        self._retains_grad = False
        self._hooks = None
        self.requires_grad = False
        if requires_grad:
            self.requires_grad_(True)

    # ----- properties -----
    shape = property(lambda self: self.data.shape)
    dtype = property(lambda self: self.data.dtype)
    ndim = property(lambda self: self.data.ndim)
    size = property(lambda self: self.data.size)
    device = property(lambda self: backend.device_of(self.data))
    is_leaf = property(lambda self: self._ctx is None)

    def __len__(self):
        return len(self.data)

    def __repr__(self):
        grad = ", requires_grad=True" if self.requires_grad else ""
        return f"tensor({self.data!r}{grad})".replace("\n", "\n       ")

    def requires_grad_(self, flag=True):
        if flag and self.data.dtype.kind != "f":
            raise TypeError(f"only floating-point tensors can require gradients, got dtype {self.data.dtype}")
        self.requires_grad = bool(flag)
        return self

    def retain_grad(self):
        """Keep ``.grad`` on this non-leaf tensor after backward (leaves always keep it)."""
        self._retains_grad = True
        return self

    def register_hook(self, hook):
        """Call ``hook(grad)`` with this tensor's gradient (a Tensor) each time backward computes it,
        before it is stored or passed on; a non-None result replaces the gradient (PyTorch's
        ``Tensor.register_hook``). Returns a handle whose ``remove()`` unregisters it."""
        if not self.requires_grad:
            raise RuntimeError("cannot register a hook on a tensor that does not require grad")
        if self._hooks is None:
            self._hooks = OrderedDict()
        handle = RemovableHandle(self._hooks)
        self._hooks[handle.id] = hook
        return handle

    # ----- conversion -----
    def numpy(self):
        """The data as a NumPy array (copied from the GPU when needed)."""
        return backend.to_device(self.data, "cpu")

    def item(self):
        return self.data.item()

    def detach(self):
        """The same data, cut off from the graph."""
        return Tensor(self.data)

    def to(self, device):
        """A copy of this tensor on ``device`` ("cpu" or "cuda"), itself a differentiable op."""
        if device == self.device:
            return self
        return _ops().ToDevice.apply(self, device=device)

    def astype(self, dtype):
        return _ops().Cast.apply(self, dtype=np.dtype(dtype))

    # ----- backward -----
    def backward(self, grad=None, retain_graph=False):
        """Accumulate d(self)/d(leaf) into ``leaf.grad`` for every leaf that requires grad.

        ``grad`` is the upstream gradient (same shape as self); it may be omitted only when
        self holds a single element. The graph's saved arrays are freed afterwards unless
        ``retain_graph=True``.
        """
        if not self.requires_grad:
            raise RuntimeError(
                "backward() called on a tensor that does not require grad: no input of the "
                "computation had requires_grad=True (or it ran under no_grad())"
            )
        xp = backend.get_array_module(self.data)
        if grad is None:
            if self.size != 1:
                raise RuntimeError(
                    f"backward() without a gradient needs a single-element tensor, but this one has "
                    f"shape {self.shape}; pass grad= an array of that shape, or reduce it (e.g. .sum())"
                )
            grad = xp.ones_like(self.data)
        else:
            grad = grad.data if isinstance(grad, Tensor) else grad
            backend.check_same_device("backward", [self.data, grad])
            grad = xp.asarray(grad, dtype=self.dtype)
            if grad.shape != self.shape:
                raise ValueError(f"backward() got a gradient of shape {grad.shape} for a tensor of shape {self.shape}")
        _backpropagate(self, grad, retain_graph)

    # ----- operators (the Functions live in minigrad.ops) -----
    def __add__(self, other):
        return _ops().Add.apply(self, other)

    def __radd__(self, other):
        return _ops().Add.apply(other, self)

    def __sub__(self, other):
        return _ops().Sub.apply(self, other)

    def __rsub__(self, other):
        return _ops().Sub.apply(other, self)

    def __mul__(self, other):
        return _ops().Mul.apply(self, other)

    def __rmul__(self, other):
        return _ops().Mul.apply(other, self)

    def __truediv__(self, other):
        return _ops().Div.apply(self, other)

    def __rtruediv__(self, other):
        return _ops().Div.apply(other, self)

    def __pow__(self, exponent):
        return _ops().Pow.apply(self, exponent)

    def __rpow__(self, base):
        return _ops().Pow.apply(base, self)

    def __matmul__(self, other):
        return _ops().matmul(self, other)

    def __rmatmul__(self, other):
        return _ops().matmul(other, self)

    def __neg__(self):
        return _ops().Neg.apply(self)

    def __abs__(self):
        return _ops().Abs.apply(self)

    def __getitem__(self, index):
        return _ops().GetItem.apply(self, index=_ops().plain_index(index))

    def _compare(self, other, name):
        other = other.data if isinstance(other, Tensor) else other
        return Tensor(getattr(self.data, name)(other))

    __lt__ = lambda self, other: self._compare(other, "__lt__")
    __le__ = lambda self, other: self._compare(other, "__le__")
    __gt__ = lambda self, other: self._compare(other, "__gt__")
    __ge__ = lambda self, other: self._compare(other, "__ge__")
    __hash__ = object.__hash__

    # ----- elementwise -----
    def exp(self):
        return _ops().Exp.apply(self)

    def log(self):
        return _ops().Log.apply(self)

    def sqrt(self):
        return _ops().Sqrt.apply(self)

    def abs(self):
        return _ops().Abs.apply(self)

    def clip(self, low=None, high=None):
        return _ops().Clip.apply(self, low=low, high=high)

    def relu(self):
        from minigrad import functional

        return functional.relu(self)

    # ----- reductions -----
    def sum(self, axis=None, keepdims=False):
        return _ops().Sum.apply(self, axis=_ops().normalize_axis(axis, self.ndim), keepdims=keepdims)

    def mean(self, axis=None, keepdims=False):
        axes = _ops().normalize_axis(axis, self.ndim)
        count = int(np.prod([self.shape[a] for a in axes]))
        return self.sum(axis=axes, keepdims=keepdims) / max(count, 1)

    def var(self, axis=None, keepdims=False, ddof=0):
        """Variance, sum((x - mean)^2) / (n - ddof); ddof=0 as in NumPy (torch's default is 1)."""
        axes = _ops().normalize_axis(axis, self.ndim)
        count = int(np.prod([self.shape[a] for a in axes]))
        centred = self - self.mean(axis=axes, keepdims=True)
        return (centred * centred).sum(axis=axes, keepdims=keepdims) / max(count - ddof, 1)

    def max(self, axis=None, keepdims=False):
        """Maximum; the gradient is shared equally among tied maxima."""
        return _ops().Extremum.apply(self, axis=_ops().normalize_axis(axis, self.ndim), keepdims=keepdims, largest=True)

    def min(self, axis=None, keepdims=False):
        return _ops().Extremum.apply(self, axis=_ops().normalize_axis(axis, self.ndim), keepdims=keepdims, largest=False)

    def argmax(self, axis=None):
        return Tensor(self.data.argmax(axis=axis))

    # ----- shape -----
    def reshape(self, *shape):
        shape = shape[0] if len(shape) == 1 and isinstance(shape[0], (tuple, list)) else shape
        return _ops().Reshape.apply(self, shape=tuple(shape))

    def transpose(self, *axes):
        axes = axes[0] if len(axes) == 1 and isinstance(axes[0], (tuple, list)) else axes
        return _ops().Transpose.apply(self, axes=tuple(axes) if axes else None)

    @property
    def T(self):
        return self.transpose()

    def flatten(self, start_dim=0, end_dim=-1):
        """Merge dimensions start_dim..end_dim into one, as torch.flatten."""
        start, end = start_dim % max(self.ndim, 1), end_dim % max(self.ndim, 1)
        shape = self.shape[:start] + (-1,) + self.shape[end + 1 :]
        return self.reshape(shape)


def as_tensor(x):
    return x if isinstance(x, Tensor) else Tensor(x)


def tensor(data, requires_grad=False, dtype=None):
    """Make a tensor from an array, list or number.

    Python floats become float32 (minigrad's default); NumPy and CuPy arrays keep their
    dtype unless ``dtype`` is given, so float64 arrays stay float64 for gradient checks.
    """
    if isinstance(data, Tensor):
        data = data.data
    if dtype is not None:
        xp = backend.get_array_module(data)
        data = xp.asarray(data, dtype=dtype)
    return Tensor(data, requires_grad=requires_grad)


def _topological_order(root):
    """Tensors reachable from ``root`` through recorded ops, inputs before outputs.

    An iterative depth-first search, so graphs of any depth work without recursion.
    """
    order, visited = [], set()
    stack = [(root, False)]
    while stack:
        node, children_done = stack.pop()
        if children_done:
            order.append(node)
            continue
        if id(node) in visited:
            continue
        visited.add(id(node))
        stack.append((node, True))
        if node._ctx is not None:
            for parent in node._ctx.parents:
                if parent is not None and parent.requires_grad and id(parent) not in visited:
                    stack.append((parent, False))
    return order


def _hook_gradient(replaced, node):
    """A gradient a hook returned, checked to fit ``node``."""
    array = replaced.data if isinstance(replaced, Tensor) else replaced
    if getattr(array, "shape", None) != node.shape:
        raise RuntimeError(f"a gradient hook returned shape {getattr(array, 'shape', None)} for a tensor of shape {node.shape}")
    return array


def _backpropagate(root, grad, retain_graph):
    grads = {id(root): grad}
    for node in reversed(_topological_order(root)):
        grad = grads.pop(id(node), None)
        if grad is None:
            continue
        for hook in list((node._hooks or {}).values()):
            replaced = hook(Tensor(grad))
            if replaced is not None:
                grad = _hook_gradient(replaced, node)
        if node._ctx is None or node._retains_grad:
            node.grad = grad.copy() if node.grad is None else node.grad + grad
        ctx = node._ctx
        if ctx is None:
            continue
        if ctx.freed:
            raise RuntimeError(
                f"backward through {ctx.function.__name__} a second time: its saved arrays were freed "
                "after the first backward; pass retain_graph=True to the first backward()"
            )
        input_grads = ctx.function.backward(ctx, grad)
        if not isinstance(input_grads, tuple):
            input_grads = (input_grads,)
        if len(input_grads) != len(ctx.parents):
            raise RuntimeError(
                f"{ctx.function.__name__}.backward returned {len(input_grads)} gradients for "
                f"{len(ctx.parents)} inputs"
            )
        for parent, parent_grad in zip(ctx.parents, input_grads):
            if parent is None or parent_grad is None or not parent.requires_grad:
                continue
            if parent_grad.shape != parent.shape:
                raise RuntimeError(
                    f"{ctx.function.__name__}.backward returned a gradient of shape {parent_grad.shape} "
                    f"for an input of shape {parent.shape}"
                )
            previous = grads.get(id(parent))
            grads[id(parent)] = parent_grad if previous is None else previous + parent_grad
        if not retain_graph:
            ctx.free()

