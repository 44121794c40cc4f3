"""The Functions behind Tensor's operators: arithmetic, reductions, shapes, devices.

Each class holds an op's forward and its backward (the vector-Jacobian product) on one
screen. Arithmetic broadcasts as NumPy does; ``unbroadcast`` sums each gradient back to
its input's shape.
"""

import numpy as np

from minigrad import backend
from minigrad.function import Function, unbroadcast
from minigrad.tensor import Tensor, as_tensor


def normalize_axis(axis, ndim):
    """``axis`` (None, int or sequence, negatives allowed) as a sorted tuple of axes."""
    if axis is None:
        return tuple(range(ndim))
    axes = (axis,) if isinstance(axis, (int, np.integer)) else tuple(axis)
    normalized = []
    for a in axes:
        if not -ndim <= a < max(ndim, 1):
            raise ValueError(f"axis {a} is out of range for a tensor with {ndim} dimensions")
        normalized.append(int(a) % max(ndim, 1))
    return tuple(sorted(set(normalized)))


def plain_index(index):
    """An index with Tensors replaced by their arrays and lists by integer arrays."""
    if isinstance(index, tuple):
        return tuple(plain_index(i) for i in index)
    if isinstance(index, Tensor):
        return index.data
    if isinstance(index, list):
        return np.asarray(index)
    return index


class Add(Function):
    @staticmethod
    def forward(ctx, a, b):
        ctx.shapes = a.shape, b.shape
        return a + b

    @staticmethod
    def backward(ctx, grad):
        return unbroadcast(grad, ctx.shapes[0]), unbroadcast(grad, ctx.shapes[1])


class Sub(Function):
    @staticmethod
    def forward(ctx, a, b):
        ctx.shapes = a.shape, b.shape
        return a - b

    @staticmethod
    def backward(ctx, grad):
        return unbroadcast(grad, ctx.shapes[0]), unbroadcast(-grad, ctx.shapes[1])


class Mul(Function):
    @staticmethod
    def forward(ctx, a, b):
        ctx.save_for_backward(a, b)
        return a * b

    @staticmethod
    def backward(ctx, grad):
        a, b = ctx.saved_tensors
        ga = unbroadcast(grad * b, a.shape) if ctx.needs_input_grad[0] else None
        gb = unbroadcast(grad * a, b.shape) if ctx.needs_input_grad[1] else None
        return ga, gb


class Div(Function):
    @staticmethod
    def forward(ctx, a, b):
        ctx.save_for_backward(a, b)
        return a / b

    @staticmethod
    def backward(ctx, grad):
        a, b = ctx.saved_tensors
        ga = unbroadcast(grad / b, a.shape) if ctx.needs_input_grad[0] else None
        gb = unbroadcast(-grad * a / (b * b), b.shape) if ctx.needs_input_grad[1] else None
        return ga, gb


class Pow(Function):
    """a ** b; d/da = b a^(b-1), d/db = a^b log a (only computed when b requires grad)."""

    @staticmethod
    def forward(ctx, a, b):
        y = a**b
        ctx.save_for_backward(a, b, y)
        return y

    @staticmethod
    def backward(ctx, grad):
        a, b, y = ctx.saved_tensors
        xp = backend.get_array_module(a)
        ga = unbroadcast(grad * b * a ** (b - 1), a.shape) if ctx.needs_input_grad[0] else None
        gb = unbroadcast(grad * y * xp.log(a), b.shape) if ctx.needs_input_grad[1] else None
        return ga, gb


class Neg(Function):
    @staticmethod
    def forward(ctx, a):
        return -a

    @staticmethod
    def backward(ctx, grad):
        return -grad


class Exp(Function):
    @staticmethod
    def forward(ctx, a):
        y = backend.get_array_module(a).exp(a)
        ctx.save_for_backward(y)
        return y

    @staticmethod
    def backward(ctx, grad):
        (y,) = ctx.saved_tensors
        return grad * y


class Log(Function):
    @staticmethod
    def forward(ctx, a):
        ctx.save_for_backward(a)
        return backend.get_array_module(a).log(a)

    @staticmethod
    def backward(ctx, grad):
        (a,) = ctx.saved_tensors
        return grad / a


class Sqrt(Function):
    @staticmethod
    def forward(ctx, a):
        y = backend.get_array_module(a).sqrt(a)
        ctx.save_for_backward(y)
        return y

    @staticmethod
    def backward(ctx, grad):
        (y,) = ctx.saved_tensors
        return grad / (2 * y)


class Abs(Function):
    """|a|; the gradient is sign(a), taken as 0 at 0."""

    @staticmethod
    def forward(ctx, a):
        ctx.save_for_backward(a)
        return abs(a)

    @staticmethod
    def backward(ctx, grad):
        (a,) = ctx.saved_tensors
        return grad * backend.get_array_module(a).sign(a)


class Clip(Function):
    """Clamp to [low, high] (either may be None); the gradient passes inside the closed range."""

    @staticmethod
    def forward(ctx, a, low, high):
        xp = backend.get_array_module(a)
        ctx.save_for_backward(a)
        ctx.low, ctx.high = low, high
        return xp.clip(a, low, high).astype(a.dtype, copy=False)

    @staticmethod
    def backward(ctx, grad):
        (a,) = ctx.saved_tensors
        inside = backend.get_array_module(a).ones(a.shape, dtype=bool)
        if ctx.low is not None:
            inside &= a >= ctx.low
        if ctx.high is not None:
            inside &= a <= ctx.high
        return grad * inside


class Sum(Function):
    @staticmethod
    def forward(ctx, a, axis, keepdims):
        ctx.shape, ctx.axis = a.shape, axis
        return a.sum(axis=axis, keepdims=keepdims)

    @staticmethod
    def backward(ctx, grad):
        xp = backend.get_array_module(grad)
        return xp.broadcast_to(xp.expand_dims(grad, ctx.axis) if grad.ndim < len(ctx.shape) else grad, ctx.shape)


class Extremum(Function):
    """max or min over axes; tied extrema share the gradient equally (as torch.amax does)."""

    @staticmethod
    def forward(ctx, a, axis, keepdims, largest):
        y = a.max(axis=axis, keepdims=True) if largest else a.min(axis=axis, keepdims=True)
        ctx.save_for_backward(a, y)
        ctx.axis = axis
        return y if keepdims else y.reshape([n for i, n in enumerate(a.shape) if i not in axis])

    @staticmethod
    def backward(ctx, grad):
        a, y = ctx.saved_tensors
        hits = a == y
        share = hits / hits.sum(axis=ctx.axis, keepdims=True)
        return grad.reshape(y.shape) * share.astype(a.dtype)


class Reshape(Function):
    @staticmethod
    def forward(ctx, a, shape):
        ctx.shape = a.shape
        try:
            return a.reshape(shape)
        except ValueError:
            raise ValueError(f"cannot reshape a tensor of shape {a.shape} ({a.size} elements) to {shape}") from None

    @staticmethod
    def backward(ctx, grad):
        return grad.reshape(ctx.shape)


class Transpose(Function):
    @staticmethod
    def forward(ctx, a, axes):
        axes = tuple(reversed(range(a.ndim))) if axes is None else tuple(normalize_axis_list(axes, a.ndim))
        ctx.inverse = tuple(np.argsort(axes))
        return a.transpose(axes)

    @staticmethod
    def backward(ctx, grad):
        return grad.transpose(ctx.inverse)


def normalize_axis_list(axes, ndim):
    if sorted(a % ndim for a in axes) != list(range(ndim)):
        raise ValueError(f"transpose axes {axes} are not a permutation of {ndim} dimensions")
    return [a % ndim for a in axes]


def _is_basic(index):
    parts = index if isinstance(index, tuple) else (index,)
    return all(p is None or p is Ellipsis or isinstance(p, (slice, int, np.integer)) for p in parts)


def scatter_add(target, index, values):
    """target[index] += values, accumulating repeated indices (NumPy's add.at, CuPy's scatter_add)."""
    if backend.is_cupy_array(target):
        import cupyx

        cupyx.scatter_add(target, index, values)
    else:
        np.add.at(target, index, values)


class GetItem(Function):
    """Indexing and slicing; the gradient is scattered back, repeated indices accumulate."""

    @staticmethod
    def forward(ctx, a, index):
        ctx.shape, ctx.dtype, ctx.index = a.shape, a.dtype, index
        try:
            return a[index]
        except IndexError as error:
            raise IndexError(f"index {index!r} does not fit a tensor of shape {a.shape}: {error}") from None

    @staticmethod
    def backward(ctx, grad):
        ga = backend.get_array_module(grad).zeros(ctx.shape, dtype=ctx.dtype)
        if _is_basic(ctx.index):
            ga[ctx.index] = grad
        else:
            scatter_add(ga, ctx.index, grad)
        return ga


class Concatenate(Function):
    @staticmethod
    def forward(ctx, *arrays, axis):
        xp = backend.get_array_module(*arrays)
        ctx.sizes, ctx.axis = [a.shape[axis] for a in arrays], axis
        try:
            return xp.concatenate(arrays, axis=axis)
        except ValueError as error:
            shapes = ", ".join(str(a.shape) for a in arrays)
            raise ValueError(f"cannot concatenate shapes {shapes} along axis {axis}: {error}") from None

    @staticmethod
    def backward(ctx, grad):
        xp = backend.get_array_module(grad)
        return tuple(xp.split(grad, np.cumsum(ctx.sizes)[:-1].tolist(), axis=ctx.axis))


def concatenate(tensors, axis=0):
    """Join tensors along an existing axis."""
    tensors = [as_tensor(t) for t in tensors]
    if not tensors:
        raise ValueError("concatenate needs at least one tensor")
    return Concatenate.apply(*tensors, axis=normalize_axis(axis, tensors[0].ndim)[0])


def stack(tensors, axis=0):
    """Join tensors along a new axis."""
    tensors = [as_tensor(t) for t in tensors]
    if not tensors:
        raise ValueError("stack needs at least one tensor")
    shapes = {t.shape for t in tensors}
    if len(shapes) > 1:
        raise ValueError(f"stack needs tensors of one shape, got {sorted(shapes)}")
    axis = normalize_axis(axis, tensors[0].ndim + 1)[0]
    expanded = [t.reshape(t.shape[:axis] + (1,) + t.shape[axis:]) for t in tensors]
    return concatenate(expanded, axis=axis)


class MatMul(Function):
    """a @ b for operands with two or more dimensions; leading dimensions broadcast (the
    kernels' ``matmul``: the CPU backend runs large products on its own threads).

    Each operand is kept only if the other one's gradient needs it: through a frozen weight
    (a Linear layer when backpropagating to the image) the input is not kept."""

    @staticmethod
    def forward(ctx, a, b):
        if a.shape[-1] != b.shape[-2]:
            raise ValueError(f"matmul: shapes {a.shape} and {b.shape} do not match ({a.shape[-1]} != {b.shape[-2]})")
        ctx.shapes = a.shape, b.shape
        ctx.save_for_backward(a if ctx.needs_input_grad[1] else None, b if ctx.needs_input_grad[0] else None)
        return backend.kernels_for(a).matmul(a, b)

    @staticmethod
    def backward(ctx, grad):
        a, b = ctx.saved_tensors
        a_shape, b_shape = ctx.shapes
        kern = backend.kernels_for(grad)
        ga = unbroadcast(kern.matmul(grad, b.swapaxes(-1, -2)), a_shape) if ctx.needs_input_grad[0] else None
        gb = unbroadcast(kern.matmul(a.swapaxes(-1, -2), grad), b_shape) if ctx.needs_input_grad[1] else None
        return ga, gb


def matmul(a, b):
    """Matrix product with NumPy's rules for 1-D operands (a vector is promoted, then squeezed)."""
    a, b = as_tensor(a), as_tensor(b)
    if a.ndim == 0 or b.ndim == 0:
        raise ValueError("matmul needs operands with at least one dimension; use * for scalars")
    if a.ndim == 1 and b.ndim == 1:
        return MatMul.apply(a.reshape(1, -1), b.reshape(-1, 1)).reshape(())
    if a.ndim == 1:
        y = MatMul.apply(a.reshape(1, -1), b)
        return y.reshape(y.shape[:-2] + y.shape[-1:])
    if b.ndim == 1:
        return MatMul.apply(a, b.reshape(-1, 1)).reshape(a.shape[:-1])
    return MatMul.apply(a, b)


class ToDevice(Function):
    @staticmethod
    def forward(ctx, a, device):
        ctx.source = backend.device_of(a)
        return backend.to_device(a, device)

    @staticmethod
    def backward(ctx, grad):
        return backend.to_device(grad, ctx.source)


class Cast(Function):
    @staticmethod
    def forward(ctx, a, dtype):
        ctx.source = a.dtype
        return a.astype(dtype)

    @staticmethod
    def backward(ctx, grad):
        return grad.astype(ctx.source)
