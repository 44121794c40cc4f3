"""Tensor, Function and reverse-mode autodiff.

A ``Tensor`` wraps one NumPy or CuPy array. Every operation on tensors is a ``Function``
with ``forward(ctx, *arrays, **params)`` and ``backward(ctx, grad)`` side by side, working
on plain arrays; ``Function.apply`` wraps the result in a Tensor and, when gradients are
needed, remembers the ``ctx`` that links it to its inputs. ``Tensor.backward`` walks that
graph once in reverse topological order, summing the gradients of tensors used more than
once, and stores ``.grad`` on the leaves that require it.
"""

import numpy as np

from minigrad import backend, config


class Context:
    """What one application of a Function keeps for its backward pass."""

    def __init__(self, function, parents, needs_input_grad):
        self.function = function
        self.parents = parents
        self.needs_input_grad = needs_input_grad
        self.saved_tensors = ()
        self.freed = False

    def save_for_backward(self, *arrays):
        self.saved_tensors = arrays

    def free(self):
        """Drop what backward needed, and the links to the inputs, so their memory can go.

        A second backward through here is then an error rather than a silent zero.
        """
        self.saved_tensors = ()
        self.parents = ()
        self.__dict__ = {k: self.__dict__[k] for k in ("function", "parents", "needs_input_grad", "saved_tensors")}
        self.freed = True


class Function:
    """Base class of every differentiable operation.

    Subclasses define two static methods on plain arrays:

    ``forward(ctx, *inputs, **params)`` returns the output array; inputs are the arrays of
    the tensor arguments (None where None was passed), params are non-differentiable
    settings (stride, axis, ...). It may stash arrays with ``ctx.save_for_backward`` and
    anything else as attributes of ``ctx``.

    ``backward(ctx, grad)`` returns one gradient (or None) per input, in order. It should
    skip inputs whose ``ctx.needs_input_grad[i]`` is False: that is how backprop to an
    image through frozen weights never computes a weight gradient.
    """

    @staticmethod
    def forward(ctx, *inputs, **params):
        raise NotImplementedError

    @staticmethod
    def backward(ctx, grad):
        raise NotImplementedError

    @classmethod
    def apply(cls, *inputs, **params):
        tensors = _as_operands(inputs)
        arrays = [None if t is None else t.data for t in tensors]
        _check_same_device(cls.__name__, arrays)
        needs_input_grad = tuple(t is not None and t.requires_grad for t in tensors)
        record = config.is_grad_enabled() and any(needs_input_grad)
        ctx = Context(cls, tensors, needs_input_grad)
        output = cls.forward(ctx, *arrays, **params)
        result = Tensor(output)
        if record:
            result.requires_grad = True
            result._ctx = ctx
        return result


def _as_operands(inputs):
    """Inputs as Tensors; Python numbers take the dtype and device of the array operands.

    This is NumPy's "weak scalar" rule: ``x * 0.1`` stays float64 for a float64 ``x`` and
    float32 for a float32 one, and a number next to a GPU tensor lands on the GPU.
    """
    arrays = [x.data if isinstance(x, Tensor) else x for x in inputs if x is not None and not _is_number(x)]
    like = next((a for a in arrays if getattr(getattr(a, "dtype", None), "kind", "") == "f"), None)
    operands = []
    for x in inputs:
        if x is None:
            operands.append(None)
        elif _is_number(x) and like is not None:
            operands.append(Tensor(backend.get_array_module(like).asarray(x, dtype=like.dtype)))
        else:
            operands.append(as_tensor(x))
    return operands


def _is_number(x):
    return isinstance(x, (int, float)) and not isinstance(x, bool)


def _check_same_device(name, arrays):
    devices = {backend.device_of(a) for a in arrays if a is not None}
    if len(devices) > 1:
        raise TypeError(
            f"{name} got both NumPy (cpu) and CuPy (cuda) arrays; move every input to one "
            f"device with .to('cpu') or .to('cuda')"
        )


def unbroadcast(grad, shape):
    """Sum ``grad`` over the axes that broadcasting expanded, so it has ``shape`` again."""
    if grad.shape == tuple(shape):
        return grad
    extra = grad.ndim - len(shape)
    grad = grad.sum(axis=tuple(range(extra))) if extra > 0 else grad
    expanded = tuple(i for i, n in enumerate(shape) if n == 1 and grad.shape[i] != 1)
    if expanded:
        grad = grad.sum(axis=expanded, keepdims=True)
    return grad.reshape(shape)


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
        from minigrad.ops import ToDevice

        return ToDevice.apply(self, device=device)

    def astype(self, dtype):
        from minigrad.ops import Cast

        return Cast.apply(self, dtype=np.dtype(dtype))

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
            _check_same_device("backward", [self.data, grad])
            grad = xp.asarray(grad, dtype=self.dtype)
            if grad.shape != self.shape:
                raise ValueError(f"backward() got a gradient of shape {grad.shape} for a tensor of shape {self.shape}")
        _backpropagate(self, grad, retain_graph)

    # ----- operators (the Functions live in minigrad.ops) -----
    def __add__(self, other):
        return ops.Add.apply(self, other)

    def __radd__(self, other):
        return ops.Add.apply(other, self)

    def __sub__(self, other):
        return ops.Sub.apply(self, other)

    def __rsub__(self, other):
        return ops.Sub.apply(other, self)

    def __mul__(self, other):
        return ops.Mul.apply(self, other)

    def __rmul__(self, other):
        return ops.Mul.apply(other, self)

    def __truediv__(self, other):
        return ops.Div.apply(self, other)

    def __rtruediv__(self, other):
        return ops.Div.apply(other, self)

    def __pow__(self, exponent):
        return ops.Pow.apply(self, exponent)

    def __rpow__(self, base):
        return ops.Pow.apply(base, self)

    def __matmul__(self, other):
        return ops.matmul(self, other)

    def __rmatmul__(self, other):
        return ops.matmul(other, self)

    def __neg__(self):
        return ops.Neg.apply(self)

    def __abs__(self):
        return ops.Abs.apply(self)

    def __getitem__(self, index):
        return ops.GetItem.apply(self, index=ops.plain_index(index))

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
        return ops.Exp.apply(self)

    def log(self):
        return ops.Log.apply(self)

    def sqrt(self):
        return ops.Sqrt.apply(self)

    def abs(self):
        return ops.Abs.apply(self)

    def clip(self, low=None, high=None):
        return ops.Clip.apply(self, low=low, high=high)

    def relu(self):
        from minigrad import functional

        return functional.relu(self)

    # ----- reductions -----
    def sum(self, axis=None, keepdims=False):
        return ops.Sum.apply(self, axis=ops.normalize_axis(axis, self.ndim), keepdims=keepdims)

    def mean(self, axis=None, keepdims=False):
        axes = ops.normalize_axis(axis, self.ndim)
        count = int(np.prod([self.shape[a] for a in axes]))
        return self.sum(axis=axes, keepdims=keepdims) / max(count, 1)

    def var(self, axis=None, keepdims=False, ddof=0):
        """Variance, sum((x - mean)^2) / (n - ddof); ddof=0 as in NumPy (torch's default is 1)."""
        axes = ops.normalize_axis(axis, self.ndim)
        count = int(np.prod([self.shape[a] for a in axes]))
        centred = self - self.mean(axis=axes, keepdims=True)
        return (centred * centred).sum(axis=axes, keepdims=keepdims) / max(count - ddof, 1)

    def max(self, axis=None, keepdims=False):
        """Maximum; the gradient is shared equally among tied maxima."""
        return ops.Extremum.apply(self, axis=ops.normalize_axis(axis, self.ndim), keepdims=keepdims, largest=True)

    def min(self, axis=None, keepdims=False):
        return ops.Extremum.apply(self, axis=ops.normalize_axis(axis, self.ndim), keepdims=keepdims, largest=False)

    def argmax(self, axis=None):
        return Tensor(self.data.argmax(axis=axis))

    # ----- shape -----
    def reshape(self, *shape):
        shape = shape[0] if len(shape) == 1 and isinstance(shape[0], (tuple, list)) else shape
        return ops.Reshape.apply(self, shape=tuple(shape))

    def transpose(self, *axes):
        axes = axes[0] if len(axes) == 1 and isinstance(axes[0], (tuple, list)) else axes
        return ops.Transpose.apply(self, axes=tuple(axes) if axes else None)

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


def _backpropagate(root, grad, retain_graph):
    grads = {id(root): grad}
    for node in reversed(_topological_order(root)):
        grad = grads.pop(id(node), None)
        if grad is None:
            continue
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


from minigrad import ops  # noqa: E402  (ops subclass Function, defined above)
