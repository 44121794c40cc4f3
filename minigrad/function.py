"""Function and Context: how every differentiable operation is defined.

A ``Function`` holds ``forward(ctx, *arrays, **params)`` and ``backward(ctx, grad)`` side by side,
on plain NumPy/CuPy arrays (PyTorch's ``autograd.Function``, Chainer's ``FunctionNode``).
``Function.apply`` wraps the result in a :class:`~minigrad.tensor.Tensor` and, when gradients are
needed, keeps the ``Context`` that links it to its inputs; ``Tensor.backward`` walks those links.
"""

from minigrad import backend, config
from minigrad.tensor import Tensor, as_tensor

__all__ = ["Context", "Function", "unbroadcast"]


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
        backend.check_same_device(cls.__name__, arrays)
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
