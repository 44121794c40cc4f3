"""Module, Parameter and the containers: the bookkeeping half of :mod:`minigrad.nn`.

A :class:`Module` owns :class:`Parameter` tensors, buffers (plain arrays such as batch-norm running
statistics) and child modules, all registered by attribute assignment exactly as in PyTorch.
Registration order, names and ``state_dict`` keys follow PyTorch (``conv.weight``, ``fc.bias``,
``features.0.weight`` inside a :class:`Sequential`, ``bn.running_mean``, ``bn.num_batches_tracked``),
so a torchvision checkpoint converted to NumPy arrays loads with ``load_state_dict`` unchanged.
"""

from collections import OrderedDict, namedtuple

import numpy as np

from minigrad import backend, config
from minigrad.function import Function
from minigrad.hooks import RemovableHandle
from minigrad.tensor import Tensor

__all__ = ["IncompatibleKeys", "Module", "ModuleList", "Parameter", "RemovableHandle", "Sequential", "StateDictError"]


# --------------------------------------------------------------------------------------------------
# Parameter
# --------------------------------------------------------------------------------------------------


class Parameter(Tensor):
    """A Tensor that a Module registers as one of its trainable weights.

    It is an ordinary leaf tensor with ``requires_grad=True`` by default; the subclass only marks
    it, so that ``module.x = Parameter(...)`` registers it in ``parameters()`` and ``state_dict()``.
    The data keeps its dtype (a float64 array gives a float64 parameter). Results of operations on
    a Parameter are plain Tensors.
    """

    def __init__(self, data, requires_grad=True):
        if isinstance(data, Tensor):
            data = data.data
        super().__init__(data, requires_grad=requires_grad)

    def __repr__(self):
        return "Parameter containing:\n" + super().__repr__()


# --------------------------------------------------------------------------------------------------
# load results
# --------------------------------------------------------------------------------------------------


class _GradientTap(Function):
    """The identity, whose backward passes the gradient through ``callback`` (None keeps it)."""

    @staticmethod
    def forward(ctx, x, callback):
        ctx.callback = callback
        return x

    @staticmethod
    def backward(ctx, grad):
        result = ctx.callback(grad)
        return grad if result is None else result


IncompatibleKeys = namedtuple("IncompatibleKeys", ["missing_keys", "unexpected_keys"])
IncompatibleKeys.__doc__ = "What ``load_state_dict(strict=False)`` skipped: keys missing, keys unused."


class StateDictError(RuntimeError):
    """``load_state_dict`` found problems; every one of them is listed in the message.

    Attributes: ``missing_keys`` (in the model, not in the checkpoint), ``unexpected_keys`` (in
    the checkpoint, not in the model) and ``mismatched`` (a list of ``(key, checkpoint_shape,
    model_shape)``). Nothing was loaded: the model is unchanged.
    """

    def __init__(self, message, missing_keys=(), unexpected_keys=(), mismatched=()):
        super().__init__(message)
        self.missing_keys = list(missing_keys)
        self.unexpected_keys = list(unexpected_keys)
        self.mismatched = list(mismatched)


def _as_array(value, key):
    """A state_dict value (NumPy/CuPy array, minigrad Tensor, torch tensor, number) as an array."""
    if isinstance(value, Tensor):
        array = value.data
    elif isinstance(value, np.ndarray) or backend.is_cupy_array(value):
        array = value
    elif hasattr(value, "detach") and hasattr(value, "cpu"):  # a torch tensor, without importing torch
        array = value.detach().cpu().numpy()
    else:
        array = np.asarray(value)
    if array.dtype.kind not in "biuf":
        raise TypeError(f"state_dict entry {key!r} is not a numeric array (got {type(value).__name__})")
    return array


def _to_numpy_copy(array):
    host = backend.to_device(array, "cpu")
    return np.array(host, copy=True)


# --------------------------------------------------------------------------------------------------
# Module
# --------------------------------------------------------------------------------------------------


class Module:
    """Base class of every layer and model.

    Subclasses call ``super().__init__()`` first, assign Parameters, buffers and child Modules as
    attributes, and define ``forward``. Calling the module runs ``forward`` and then the forward
    hooks.

    State: ``_parameters`` (name -> Parameter or None), ``_buffers`` (name -> array or None),
    ``_modules`` (name -> Module or None), all in registration order; ``training`` (bool).
    """

    def __init__(self):
        object.__setattr__(self, "training", True)
        object.__setattr__(self, "_parameters", OrderedDict())
        object.__setattr__(self, "_buffers", OrderedDict())
        object.__setattr__(self, "_non_persistent", set())
        object.__setattr__(self, "_modules", OrderedDict())
        object.__setattr__(self, "_forward_hooks", OrderedDict())
        object.__setattr__(self, "_forward_pre_hooks", OrderedDict())
        object.__setattr__(self, "_backward_hooks", OrderedDict())

    # ----- attribute registration ------------------------------------------------------------

    def _store(self, name):
        store = self.__dict__.get(name)
        if store is None:
            raise AttributeError(
                f"cannot register on {type(self).__name__} before Module.__init__(): call "
                "super().__init__() first in the subclass's __init__"
            )
        return store

    def __setattr__(self, name, value):
        params = self.__dict__.get("_parameters")
        modules = self.__dict__.get("_modules")
        buffers = self.__dict__.get("_buffers")
        if isinstance(value, Parameter):
            self._store("_parameters")
            self._forget(name)
            params[name] = value
        elif isinstance(value, Module):
            self._store("_modules")
            self._forget(name)
            modules[name] = value
        elif params is not None and name in params:
            if value is not None:
                raise TypeError(
                    f"cannot assign {type(value).__name__} to parameter {name!r} of "
                    f"{type(self).__name__}: use nn.Parameter(...) or None"
                )
            params[name] = None
        elif modules is not None and name in modules:
            if value is not None:
                raise TypeError(
                    f"cannot assign {type(value).__name__} to child module {name!r}: "
                    "use a Module or None"
                )
            modules[name] = None
        elif buffers is not None and name in buffers:
            buffers[name] = self._check_buffer(name, value)
        else:
            object.__setattr__(self, name, value)

    def _forget(self, name):
        """Drop ``name`` from every registry and the instance dict before re-registering it."""
        for store in ("_parameters", "_buffers", "_modules"):
            self.__dict__[store].pop(name, None)
        self.__dict__["_non_persistent"].discard(name)
        self.__dict__.pop(name, None)

    def __getattr__(self, name):
        # only called when normal lookup fails: look in the registries
        d = self.__dict__
        for store in ("_parameters", "_buffers", "_modules"):
            registry = d.get(store)
            if registry is not None and name in registry:
                return registry[name]
        raise AttributeError(f"{type(self).__name__!r} object has no attribute {name!r}")

    def __delattr__(self, name):
        for store in ("_parameters", "_buffers", "_modules"):
            registry = self.__dict__.get(store)
            if registry is not None and name in registry:
                del registry[name]
                self.__dict__["_non_persistent"].discard(name)
                return
        object.__delattr__(self, name)

    def __dir__(self):
        extra = [*self._parameters, *self._buffers, *self._modules]
        return sorted(set(super().__dir__()) | set(extra))

    @staticmethod
    def _check_name(name):
        if not isinstance(name, str) or not name or "." in name:
            raise KeyError(f"a registered name must be a non-empty string without '.', got {name!r}")

    @staticmethod
    def _check_buffer(name, value):
        if value is None:
            return None
        if isinstance(value, Tensor):
            return value.data
        if isinstance(value, np.ndarray) or backend.is_cupy_array(value):
            return value
        raise TypeError(
            f"buffer {name!r} must be a NumPy or CuPy array (or None), got {type(value).__name__}"
        )

    def register_parameter(self, name, param):
        """Register ``param`` (a Parameter or None) under ``name``; same as attribute assignment."""
        self._check_name(name)
        if param is not None and not isinstance(param, Parameter):
            raise TypeError(f"parameter {name!r} must be an nn.Parameter or None, got {type(param).__name__}")
        self._store("_parameters")
        self._forget(name)
        self._parameters[name] = param

    def register_buffer(self, name, array, persistent=True):
        """Register a non-trainable array (e.g. running statistics) under ``name``.

        Buffers move with ``to(device)``, and persistent ones (the default) are saved in and
        loaded from ``state_dict``. A buffer is a plain NumPy/CuPy array, not a Tensor: it takes
        no part in autograd, and functional code may update it in place.
        """
        self._check_name(name)
        self._store("_buffers")
        array = self._check_buffer(name, array)
        self._forget(name)
        self._buffers[name] = array
        if not persistent:
            self._non_persistent.add(name)

    def add_module(self, name, module):
        """Register ``module`` (or None) as a child under ``name``."""
        self._check_name(name)
        if module is not None and not isinstance(module, Module):
            raise TypeError(f"child {name!r} must be a Module or None, got {type(module).__name__}")
        self._store("_modules")
        self._forget(name)
        self._modules[name] = module

    # ----- calling ----------------------------------------------------------------------------

    def forward(self, *args, **kwargs):
        raise NotImplementedError(f"{type(self).__name__} does not define forward()")

    def __call__(self, *args, **kwargs):
        for hook in list(self._forward_pre_hooks.values()):
            result = hook(self, args)
            if result is not None:
                args = result if isinstance(result, tuple) else (result,)
        if self._backward_hooks and config.is_grad_enabled():
            output = self._forward_with_backward_hooks(args, kwargs)
        else:
            output = self.forward(*args, **kwargs)
        for hook in list(self._forward_hooks.values()):
            result = hook(self, args, output)
            if result is not None:
                output = result
        return output

    def _forward_with_backward_hooks(self, args, kwargs):
        """Run forward between two identity taps: the output's tap records grad_output, the input's
        tap (reached later in the backward pass) calls the hooks, whose result replaces grad_input.
        When the input needs no gradient the output's tap calls them with grad_input (None,)."""
        tensors = [a for a in args if isinstance(a, Tensor)]
        if len(tensors) != 1 or not isinstance(args[0], Tensor):
            raise TypeError(f"{type(self).__name__}: backward hooks support modules called with one tensor, "
                            f"got {len(tensors)} tensor argument(s)")
        seen = {}

        def call_hooks(grad_input):
            for hook in list(self._backward_hooks.values()):
                result = hook(self, (None if grad_input is None else Tensor(grad_input),), (Tensor(seen["output"]),))
                if result is not None and grad_input is not None:
                    replaced = result[0] if isinstance(result, (tuple, list)) else result
                    grad_input = replaced.data if isinstance(replaced, Tensor) else replaced
            return grad_input

        def at_output(grad):
            seen["output"] = grad
            if not args[0].requires_grad:
                call_hooks(None)

        x = _GradientTap.apply(args[0], callback=call_hooks) if args[0].requires_grad else args[0]
        output = self.forward(x, *args[1:], **kwargs)
        return _GradientTap.apply(output, callback=at_output) if output.requires_grad else output

    def register_forward_hook(self, hook):
        """Call ``hook(module, inputs, output)`` after every forward of this module.

        ``inputs`` is the tuple of positional arguments. If the hook returns something other than
        None, that replaces the output (as in PyTorch). Returns a :class:`RemovableHandle`.
        This is how activations are read out of a model for visualization.
        """
        if not callable(hook):
            raise TypeError("a forward hook must be callable as hook(module, inputs, output)")
        handle = RemovableHandle(self._forward_hooks)
        self._forward_hooks[handle.id] = hook
        return handle

    def register_full_backward_hook(self, hook):
        """Call ``hook(module, grad_input, grad_output)`` when the gradient w.r.t. this module's input
        has been computed, as PyTorch does: both are one-element tuples of Tensors (grad_input is
        ``(None,)`` when the input needs no gradient), and a non-None result replaces grad_input.
        Modules called with one tensor only."""
        if not callable(hook):
            raise TypeError("a backward hook must be callable as hook(module, grad_input, grad_output)")
        handle = RemovableHandle(self._backward_hooks)
        self._backward_hooks[handle.id] = hook
        return handle

    def register_forward_pre_hook(self, hook):
        """Call ``hook(module, inputs)`` before every forward; a non-None result replaces the inputs."""
        if not callable(hook):
            raise TypeError("a forward pre-hook must be callable as hook(module, inputs)")
        handle = RemovableHandle(self._forward_pre_hooks)
        self._forward_pre_hooks[handle.id] = hook
        return handle

    # ----- traversal --------------------------------------------------------------------------

    def named_children(self):
        """(name, module) for each direct child, in registration order, each module once."""
        seen = set()
        for name, module in self._modules.items():
            if module is not None and id(module) not in seen:
                seen.add(id(module))
                yield name, module

    def children(self):
        for _, module in self.named_children():
            yield module

    def named_modules(self, prefix="", _seen=None):
        """(dotted name, module) for this module ("") and every descendant, pre-order, each once."""
        seen = set() if _seen is None else _seen
        if id(self) in seen:
            return
        seen.add(id(self))
        yield prefix, self
        for name, module in self._modules.items():
            if module is None:
                continue
            yield from module.named_modules(f"{prefix}.{name}" if prefix else name, seen)

    def modules(self):
        for _, module in self.named_modules():
            yield module

    def named_parameters(self, prefix="", recurse=True):
        """(dotted name, Parameter) pairs, PyTorch's order; a shared Parameter appears once."""
        seen = set()
        mods = self.named_modules(prefix) if recurse else [(prefix, self)]
        for mprefix, module in mods:
            for name, param in module._parameters.items():
                if param is None or id(param) in seen:
                    continue
                seen.add(id(param))
                yield (f"{mprefix}.{name}" if mprefix else name), param

    def parameters(self, recurse=True):
        for _, param in self.named_parameters(recurse=recurse):
            yield param

    def named_buffers(self, prefix="", recurse=True):
        mods = self.named_modules(prefix) if recurse else [(prefix, self)]
        for mprefix, module in mods:
            for name, buf in module._buffers.items():
                if buf is not None:
                    yield (f"{mprefix}.{name}" if mprefix else name), buf

    def buffers(self, recurse=True):
        for _, buf in self.named_buffers(recurse=recurse):
            yield buf

    def apply(self, fn):
        """Call ``fn(module)`` on every child (recursively) and then on self; returns self."""
        for module in self.children():
            module.apply(fn)
        fn(self)
        return self

    # ----- modes and gradients ----------------------------------------------------------------

    def train(self, mode=True):
        """Set training mode (dropout active, batch norm uses and updates batch statistics)."""
        for module in self.modules():
            object.__setattr__(module, "training", bool(mode))
        return self

    def eval(self):
        """Set evaluation mode (dropout off, batch norm uses running statistics)."""
        return self.train(False)

    def zero_grad(self, set_to_none=True):
        """Clear the gradients of all parameters (None, or zeros with ``set_to_none=False``)."""
        for param in self.parameters():
            if param.grad is None:
                continue
            if set_to_none:
                param.grad = None
            else:
                param.grad = backend.get_array_module(param.data).zeros_like(param.data)

    def requires_grad_(self, requires_grad=True):
        """Set ``requires_grad`` on every parameter; ``False`` freezes the model.

        Backprop-to-image on a frozen model then computes no weight gradients at all.
        """
        for param in self.parameters():
            param.requires_grad_(requires_grad)
        return self

    # ----- device and dtype -------------------------------------------------------------------

    def _map_arrays(self, fn, floating_only=False):
        """Replace every parameter's data (and grad) and every buffer with ``fn(array)``.

        Parameters keep their identity (an optimizer holding them still sees the new data).
        """
        for module in self.modules():
            for param in module._parameters.values():
                if param is None:
                    continue
                param.data = fn(param.data)
                if param.grad is not None:
                    param.grad = fn(param.grad)
            for name, buf in module._buffers.items():
                if buf is None or (floating_only and buf.dtype.kind != "f"):
                    continue
                module._buffers[name] = fn(buf)
        return self

    def to(self, device=None, dtype=None):
        """Move (and/or cast) all parameters and buffers in place; returns self.

        ``device`` is "cpu" or "cuda"; ``dtype`` (e.g. "float64", for gradient checks) applies to
        floating-point parameters and buffers only (``num_batches_tracked`` stays an integer).
        Parameters remain the same objects, so optimizers built before the move keep working.
        """
        if device is not None and device not in ("cpu", "cuda"):
            try:
                dtype, device = np.dtype(device), None
            except TypeError:
                raise ValueError(f'unknown device {device!r}; use "cpu" or "cuda"') from None
        if device is not None:
            self._map_arrays(lambda a: backend.to_device(a, device))
        if dtype is not None:
            dtype = np.dtype(dtype)
            if dtype.kind != "f":
                raise TypeError(f"can only cast a module to a floating dtype, got {dtype}")
            self._map_arrays(lambda a: a.astype(dtype, copy=False), floating_only=True)
        return self

    def cpu(self):
        return self.to("cpu")

    def cuda(self):
        return self.to("cuda")

    def float(self):
        return self.to(dtype=np.float32)

    def double(self):
        return self.to(dtype=np.float64)

    # ----- state_dict -------------------------------------------------------------------------

    # names of buffers that a checkpoint may lack without it being an error
    _optional_state = ()

    def _state_entries(self, prefix=""):
        """(key, module, kind, name) for every saved entry, in PyTorch's state_dict order.

        Own parameters, then own persistent buffers, then each child recursively. Unlike
        ``named_modules``, a child registered twice is listed under both names, as in PyTorch.
        """
        for name, param in self._parameters.items():
            if param is not None:
                yield prefix + name, self, "param", name
        for name, buf in self._buffers.items():
            if buf is not None and name not in self._non_persistent:
                yield prefix + name, self, "buffer", name
        for name, module in self._modules.items():
            if module is not None:
                yield from module._state_entries(prefix + name + ".")

    def state_dict(self):
        """{dotted key: NumPy array} of all parameters and persistent buffers, PyTorch's keys/order.

        The arrays are copies on the CPU, so the result is a snapshot that later training does not
        change, and can be saved with NumPy or the weights package.
        """
        out = OrderedDict()
        for key, module, kind, name in self._state_entries():
            array = module._parameters[name].data if kind == "param" else module._buffers[name]
            out[key] = _to_numpy_copy(array)
        return out

    def load_state_dict(self, state_dict, strict=True):
        """Copy arrays from ``state_dict`` into the parameters and buffers, in place.

        Values may be NumPy or CuPy arrays, minigrad Tensors or torch tensors; each is converted to
        the dtype and device of what it replaces. Everything is checked before anything is
        written: with ``strict=True`` missing and unexpected keys are errors, and a shape mismatch
        is always an error; a :class:`StateDictError` lists every problem at once and leaves the
        model unchanged. (A BatchNorm ``num_batches_tracked`` missing from an older checkpoint is
        not an error.) Returns ``IncompatibleKeys(missing_keys, unexpected_keys)``.
        """
        if not hasattr(state_dict, "keys") or not hasattr(state_dict, "__getitem__"):
            raise TypeError(f"load_state_dict expects a mapping of key -> array, got {type(state_dict).__name__}")
        entries = {key: (module, kind, name) for key, module, kind, name in self._state_entries()}
        missing = [key for key, (module, _, name) in entries.items()
                   if key not in state_dict and name not in module._optional_state]
        unexpected = [key for key in state_dict if key not in entries]
        mismatched, bad_values, plan = [], [], []
        for key, (module, kind, name) in entries.items():
            if key not in state_dict:
                continue
            target = module._parameters[name].data if kind == "param" else module._buffers[name]
            try:
                source = _as_array(state_dict[key], key)
            except TypeError as error:
                bad_values.append(str(error))
                continue
            if tuple(source.shape) != tuple(target.shape):
                mismatched.append((key, tuple(source.shape), tuple(target.shape)))
                continue
            plan.append((target, source))

        problems = []
        if strict and missing:
            problems.append("missing key(s): " + ", ".join(missing))
        if strict and unexpected:
            problems.append("unexpected key(s): " + ", ".join(unexpected))
        for key, got, want in mismatched:
            problems.append(f"shape mismatch for {key}: checkpoint has {got}, the model has {want}")
        problems.extend(bad_values)
        if problems:
            raise StateDictError(
                f"error(s) loading state_dict into {type(self).__name__} (nothing was loaded):\n  "
                + "\n  ".join(problems),
                missing if strict else (), unexpected if strict else (), mismatched,
            )
        for target, source in plan:
            backend.copy_into(target, source)
        return IncompatibleKeys(missing, unexpected)

    # ----- printing ---------------------------------------------------------------------------

    def extra_repr(self):
        """The text inside the parentheses of this module's repr (its settings)."""
        return ""

    def __repr__(self):
        extra = self.extra_repr()
        children = [(name, m) for name, m in self._modules.items() if m is not None]
        if not children:
            return f"{type(self).__name__}({extra})"
        lines = [f"{type(self).__name__}("]
        if extra:
            lines.append("  " + extra.replace("\n", "\n  "))
        for name, module in children:
            lines.append(f"  ({name}): " + repr(module).replace("\n", "\n  "))
        lines.append(")")
        return "\n".join(lines)


# --------------------------------------------------------------------------------------------------
# containers
# --------------------------------------------------------------------------------------------------


class Sequential(Module):
    """Modules applied in order; children are named "0", "1", ... (or as given in an OrderedDict).

    The names are PyTorch's, so ``features.0.weight`` in a torchvision checkpoint lands in the
    first layer of a ``features = Sequential(...)``. Supports ``len``, iteration, integer
    indexing (negative too) and slicing; a slice is a new Sequential sharing the same layers under
    their original names, so ``model.features[:10]`` runs the first ten layers.
    """

    def __init__(self, *modules):
        super().__init__()
        if len(modules) == 1 and isinstance(modules[0], OrderedDict):
            for name, module in modules[0].items():
                self.add_module(name, module)
        else:
            for i, module in enumerate(modules):
                if not isinstance(module, Module):
                    raise TypeError(f"Sequential takes Modules; argument {i} is {type(module).__name__}")
                self.add_module(str(i), module)

    def __len__(self):
        return len(self._modules)

    def __iter__(self):
        return iter(self._modules.values())

    def __getitem__(self, index):
        items = list(self._modules.items())
        if isinstance(index, slice):
            return Sequential(OrderedDict(items[index]))
        if isinstance(index, str):
            return self._modules[index]
        n = len(items)
        i = int(index)
        if not -n <= i < n:
            raise IndexError(f"index {index} is out of range for a Sequential of length {n}")
        return items[i % n][1]

    def append(self, module):
        """Add ``module`` at the end (named by the next free integer)."""
        self.add_module(str(len(self)), module)
        return self

    def forward(self, x):
        for module in self._modules.values():
            x = module(x)
        return x


class ModuleList(Module):
    """A list of modules registered as children "0", "1", ... (no forward of its own)."""

    def __init__(self, modules=()):
        super().__init__()
        for module in modules:
            self.append(module)

    def append(self, module):
        self.add_module(str(len(self)), module)
        return self

    def __len__(self):
        return len(self._modules)

    def __iter__(self):
        return iter(self._modules.values())

    def __getitem__(self, index):
        items = list(self._modules.values())
        if isinstance(index, slice):
            return ModuleList(items[index])
        return items[index]
