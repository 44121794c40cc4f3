"""minigrad.nn: modules, parameters and the layers of the classic CNNs, PyTorch-compatible.

A :class:`Module` owns :class:`Parameter` tensors, buffers (plain arrays such as batch-norm running
statistics) and child modules, all registered by attribute assignment exactly as in PyTorch::

    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv = nn.Conv2d(3, 8, 3, padding=1)   # a child module named "conv"
            self.fc = nn.Linear(8, 10)

        def forward(self, x):
            return self.fc(F.adaptive_avg_pool2d(F.relu(self.conv(x)), 1).flatten(1))

Registration order, names and ``state_dict`` keys follow PyTorch (``conv.weight``, ``fc.bias``,
``features.0.weight`` inside a :class:`Sequential`, ``bn.running_mean``, ``bn.num_batches_tracked``),
so a torchvision checkpoint converted to NumPy arrays loads with ``load_state_dict`` unchanged.

Layers call :mod:`minigrad.functional`; this module adds state, bookkeeping and PyTorch's default
initializations (drawn from ``minigrad.random_generator()``, so ``minigrad.manual_seed`` makes models
reproducible). There is no in-place arithmetic on tensors here: ``inplace=`` arguments are accepted
for compatibility with model definitions written for PyTorch and ignored.
"""

import itertools
import math
import types
from collections import OrderedDict, namedtuple

import numpy as np

from minigrad import backend
from minigrad import functional as F
from minigrad.seeding import random_generator
from minigrad.tensor import Tensor

__all__ = [
    "Module", "Parameter", "Sequential", "ModuleList", "Identity", "Conv2d", "Linear", "ReLU",
    "LeakyReLU", "MaxPool2d", "AvgPool2d", "AdaptiveAvgPool2d", "Dropout", "BatchNorm2d", "Flatten",
    "Upsample", "LocalResponseNorm", "StateDictError", "RemovableHandle", "init",
]


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
# hooks and load results
# --------------------------------------------------------------------------------------------------


class RemovableHandle:
    """Returned by ``register_forward_hook``; ``.remove()`` unregisters the hook.

    Also a context manager, so a hook can live exactly as long as a ``with`` block.
    """

    _ids = itertools.count()

    def __init__(self, hooks):
        self._hooks = hooks
        self.id = next(RemovableHandle._ids)

    def remove(self):
        self._hooks.pop(self.id, None)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.remove()
        return False


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


def _copy_into(target, source):
    """target[...] = source, converting dtype and moving across devices as needed."""
    device = backend.device_of(target)
    if backend.device_of(source) != device:
        source = backend.to_device(source, device)
    target[...] = source


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
        output = self.forward(*args, **kwargs)
        for hook in list(self._forward_hooks.values()):
            result = hook(self, args, output)
            if result is not None:
                output = result
        return output

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
            _copy_into(target, source)
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


# --------------------------------------------------------------------------------------------------
# initialization
# --------------------------------------------------------------------------------------------------


def _fans(shape):
    """(fan_in, fan_out) of a weight: (in, out) for Linear, times the kernel area for Conv2d."""
    if len(shape) < 2:
        raise ValueError(f"fan-in and fan-out need a weight with at least 2 dimensions, got shape {shape}")
    receptive = int(np.prod(shape[2:])) if len(shape) > 2 else 1
    return shape[1] * receptive, shape[0] * receptive


def _gain(nonlinearity, a=0.0):
    if nonlinearity in ("linear", "conv2d", "sigmoid"):
        return 1.0
    if nonlinearity == "tanh":
        return 5.0 / 3
    if nonlinearity == "relu":
        return math.sqrt(2.0)
    if nonlinearity == "leaky_relu":
        return math.sqrt(2.0 / (1 + a * a))
    raise ValueError(f"unknown nonlinearity {nonlinearity!r}")


def _fill(tensor, values):
    """Write host values into ``tensor.data`` in place (any device, the tensor's dtype)."""
    _copy_into(tensor.data, np.asarray(values))
    return tensor


def _uniform_(tensor, low=0.0, high=1.0):
    """Fill with U(low, high) from minigrad's generator."""
    return _fill(tensor, random_generator().uniform(low, high, size=tensor.shape))


def _normal_(tensor, mean=0.0, std=1.0):
    """Fill with N(mean, std^2) from minigrad's generator."""
    return _fill(tensor, random_generator().normal(mean, std, size=tensor.shape))


def _constant_(tensor, value):
    return _fill(tensor, np.full(tensor.shape, value))


def _kaiming_uniform_(tensor, a=0.0, mode="fan_in", nonlinearity="leaky_relu"):
    """He et al. (2015) uniform init: U(-b, b) with b = gain * sqrt(3 / fan).

    PyTorch's default for Conv2d and Linear weights is ``a=sqrt(5)``, which gives
    b = 1/sqrt(fan_in).
    """
    fan = _fans(tensor.shape)[0 if mode == "fan_in" else 1]
    bound = _gain(nonlinearity, a) * math.sqrt(3.0 / fan)
    return _uniform_(tensor, -bound, bound)


def _kaiming_normal_(tensor, a=0.0, mode="fan_in", nonlinearity="leaky_relu"):
    """He et al. (2015) normal init: N(0, (gain / sqrt(fan))^2) (torchvision VGG uses fan_out, relu)."""
    fan = _fans(tensor.shape)[0 if mode == "fan_in" else 1]
    return _normal_(tensor, 0.0, _gain(nonlinearity, a) / math.sqrt(fan))


def _xavier_uniform_(tensor, gain=1.0):
    """Glorot & Bengio (2010): U(-b, b), b = gain * sqrt(6 / (fan_in + fan_out))."""
    fan_in, fan_out = _fans(tensor.shape)
    bound = gain * math.sqrt(6.0 / (fan_in + fan_out))
    return _uniform_(tensor, -bound, bound)


init = types.SimpleNamespace(
    uniform_=_uniform_, normal_=_normal_, constant_=_constant_,
    zeros_=lambda t: _constant_(t, 0.0), ones_=lambda t: _constant_(t, 1.0),
    kaiming_uniform_=_kaiming_uniform_, kaiming_normal_=_kaiming_normal_,
    xavier_uniform_=_xavier_uniform_, calculate_gain=_gain,
)
init.__doc__ = """In-place initializers (``nn.init.kaiming_normal_(conv.weight, mode="fan_out", nonlinearity="relu")``).

All draw from ``minigrad.random_generator()`` on the CPU and copy into the tensor's device and dtype.
"""


def _empty_parameter(shape, dtype):
    return Parameter(np.zeros(shape, dtype=np.dtype(dtype)))


def _reset_weight_and_bias(weight, bias):
    """PyTorch's default for Conv2d/Linear: weight kaiming_uniform(a=sqrt(5)), bias U(±1/sqrt(fan_in))."""
    _kaiming_uniform_(weight, a=math.sqrt(5))
    if bias is not None:
        fan_in = _fans(weight.shape)[0]
        bound = 1.0 / math.sqrt(fan_in) if fan_in > 0 else 0.0
        _uniform_(bias, -bound, bound)


# --------------------------------------------------------------------------------------------------
# layers
# --------------------------------------------------------------------------------------------------


def _pair(value, name):
    if isinstance(value, (int, np.integer)) and not isinstance(value, bool):
        return int(value), int(value)
    pair = tuple(value)
    if len(pair) != 2 or not all(isinstance(v, (int, np.integer)) for v in pair):
        raise TypeError(f"{name} must be an int or a pair of ints, got {value!r}")
    return int(pair[0]), int(pair[1])


def _positive_int(value, name):
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
        raise ValueError(f"{name} must be a positive integer, got {value!r}")
    return int(value)


class Conv2d(Module):
    """2-D convolution over (N, C, H, W) inputs, weight (out, in / groups, kh, kw).

    Initialized as PyTorch does: weight and bias U(-1/sqrt(fan_in), 1/sqrt(fan_in)) with
    fan_in = in_channels / groups * kh * kw.
    """

    def __init__(self, in_channels, out_channels, kernel_size, stride=1, padding=0, dilation=1,
                 groups=1, bias=True, dtype=np.float32):
        super().__init__()
        self.in_channels = _positive_int(in_channels, "in_channels")
        self.out_channels = _positive_int(out_channels, "out_channels")
        self.groups = _positive_int(groups, "groups")
        if in_channels % groups or out_channels % groups:
            raise ValueError(
                f"groups={groups} must divide in_channels={in_channels} and out_channels={out_channels}"
            )
        self.kernel_size = _pair(kernel_size, "kernel_size")
        self.stride = _pair(stride, "stride")
        self.padding = _pair(padding, "padding")
        self.dilation = _pair(dilation, "dilation")
        self.weight = _empty_parameter((out_channels, in_channels // groups) + self.kernel_size, dtype)
        if bias:
            self.bias = _empty_parameter((out_channels,), dtype)
        else:
            self.register_parameter("bias", None)
        self.reset_parameters()

    def reset_parameters(self):
        _reset_weight_and_bias(self.weight, self.bias)

    def forward(self, x):
        return F.conv2d(x, self.weight, self.bias, self.stride, self.padding, self.dilation, self.groups)

    def extra_repr(self):
        s = f"{self.in_channels}, {self.out_channels}, kernel_size={self.kernel_size}, stride={self.stride}"
        if self.padding != (0, 0):
            s += f", padding={self.padding}"
        if self.dilation != (1, 1):
            s += f", dilation={self.dilation}"
        if self.groups != 1:
            s += f", groups={self.groups}"
        if self.bias is None:
            s += ", bias=False"
        return s


class Linear(Module):
    """y = x W^T + b with W of shape (out_features, in_features), PyTorch's layout and init."""

    def __init__(self, in_features, out_features, bias=True, dtype=np.float32):
        super().__init__()
        self.in_features = _positive_int(in_features, "in_features")
        self.out_features = _positive_int(out_features, "out_features")
        self.weight = _empty_parameter((out_features, in_features), dtype)
        if bias:
            self.bias = _empty_parameter((out_features,), dtype)
        else:
            self.register_parameter("bias", None)
        self.reset_parameters()

    def reset_parameters(self):
        _reset_weight_and_bias(self.weight, self.bias)

    def forward(self, x):
        return F.linear(x, self.weight, self.bias)

    def extra_repr(self):
        return f"in_features={self.in_features}, out_features={self.out_features}, bias={self.bias is not None}"


class Identity(Module):
    """Returns its input (a placeholder where a layer is removed)."""

    def __init__(self, *args, **kwargs):
        super().__init__()

    def forward(self, x):
        return x


class ReLU(Module):
    """max(x, 0). Its backward rule (standard / deconvnet / guided) is chosen at backward time with
    ``minigrad.relu_backward(...)``. ``inplace`` is accepted for PyTorch compatibility and ignored."""

    def __init__(self, inplace=False):
        super().__init__()

    def forward(self, x):
        return F.relu(x)


class LeakyReLU(Module):
    """x for x > 0, negative_slope * x otherwise."""

    def __init__(self, negative_slope=0.01, inplace=False):
        super().__init__()
        self.negative_slope = float(negative_slope)

    def forward(self, x):
        return F.leaky_relu(x, self.negative_slope)

    def extra_repr(self):
        return f"negative_slope={self.negative_slope}"


class MaxPool2d(Module):
    """Max pooling; ``stride`` defaults to ``kernel_size``. Only dilation=1 and ceil_mode=False."""

    def __init__(self, kernel_size, stride=None, padding=0, dilation=1, ceil_mode=False):
        super().__init__()
        if _pair(dilation, "dilation") != (1, 1) or ceil_mode:
            raise NotImplementedError("MaxPool2d supports only dilation=1 and ceil_mode=False")
        self.kernel_size = kernel_size
        self.stride = kernel_size if stride is None else stride
        self.padding = padding

    def forward(self, x):
        return F.max_pool2d(x, self.kernel_size, self.stride, self.padding)

    def extra_repr(self):
        return (f"kernel_size={self.kernel_size}, stride={self.stride}, padding={self.padding}, "
                "dilation=1, ceil_mode=False")


class AvgPool2d(Module):
    """Average pooling; ``stride`` defaults to ``kernel_size``."""

    def __init__(self, kernel_size, stride=None, padding=0, ceil_mode=False, count_include_pad=True):
        super().__init__()
        if ceil_mode:
            raise NotImplementedError("AvgPool2d supports only ceil_mode=False")
        self.kernel_size = kernel_size
        self.stride = kernel_size if stride is None else stride
        self.padding = padding
        self.count_include_pad = bool(count_include_pad)

    def forward(self, x):
        return F.avg_pool2d(x, self.kernel_size, self.stride, self.padding, self.count_include_pad)

    def extra_repr(self):
        return f"kernel_size={self.kernel_size}, stride={self.stride}, padding={self.padding}"


class AdaptiveAvgPool2d(Module):
    """Average-pool any input to ``output_size`` (int or pair), PyTorch's cell boundaries."""

    def __init__(self, output_size):
        super().__init__()
        self.output_size = output_size

    def forward(self, x):
        return F.adaptive_avg_pool2d(x, self.output_size)

    def extra_repr(self):
        return f"output_size={self.output_size}"


class Dropout(Module):
    """Inverted dropout with probability ``p`` in training mode; the identity in eval mode."""

    def __init__(self, p=0.5, inplace=False):
        super().__init__()
        if isinstance(p, bool) or not isinstance(p, (int, float)) or not 0 <= p <= 1:
            raise ValueError(f"dropout probability must lie in [0, 1], got {p!r}")
        self.p = float(p)

    def forward(self, x):
        return F.dropout(x, self.p, training=self.training)

    def extra_repr(self):
        return f"p={self.p}, inplace=False"


class BatchNorm2d(Module):
    """Batch normalization over (N, C, H, W) (Ioffe & Szegedy, 2015), PyTorch's state and semantics.

    Parameters ``weight`` (ones) and ``bias`` (zeros) when ``affine``; buffers ``running_mean``
    (zeros), ``running_var`` (ones) and ``num_batches_tracked`` (int64 0) when
    ``track_running_stats``, so torch BatchNorm2d state_dicts load unchanged. Training mode
    normalizes with the batch statistics and updates the running ones (the variance unbiased) with
    ``momentum``, or with a cumulative average when ``momentum=None``; eval mode uses the running
    statistics.
    """

    _optional_state = ("num_batches_tracked",)

    def __init__(self, num_features, eps=1e-5, momentum=0.1, affine=True, track_running_stats=True,
                 dtype=np.float32):
        super().__init__()
        self.num_features = _positive_int(num_features, "num_features")
        self.eps = float(eps)
        self.momentum = None if momentum is None else float(momentum)
        self.affine = bool(affine)
        self.track_running_stats = bool(track_running_stats)
        dtype = np.dtype(dtype)
        if self.affine:
            self.weight = Parameter(np.ones(num_features, dtype=dtype))
            self.bias = Parameter(np.zeros(num_features, dtype=dtype))
        else:
            self.register_parameter("weight", None)
            self.register_parameter("bias", None)
        if self.track_running_stats:
            self.register_buffer("running_mean", np.zeros(num_features, dtype=dtype))
            self.register_buffer("running_var", np.ones(num_features, dtype=dtype))
            self.register_buffer("num_batches_tracked", np.zeros((), dtype=np.int64))
        else:
            self.register_buffer("running_mean", None)
            self.register_buffer("running_var", None)
            self.register_buffer("num_batches_tracked", None)

    def reset_running_stats(self):
        if self.track_running_stats:
            self.running_mean[...] = 0
            self.running_var[...] = 1
            self.num_batches_tracked[...] = 0

    def forward(self, x):
        if x.ndim != 4:
            raise ValueError(f"BatchNorm2d expects an input of shape (N, C, H, W), got shape {tuple(x.shape)}")
        if x.shape[1] != self.num_features:
            raise ValueError(
                f"BatchNorm2d({self.num_features}) got an input with {x.shape[1]} channels (shape {tuple(x.shape)})"
            )
        use_batch_stats = self.training or not self.track_running_stats
        momentum = 0.0 if self.momentum is None else self.momentum
        if self.training and self.track_running_stats:
            self.num_batches_tracked += 1  # in place on the 0-d buffer
            if self.momentum is None:
                momentum = 1.0 / float(self.num_batches_tracked)
        update = self.training and self.track_running_stats
        return F.batch_norm(
            x,
            self.running_mean if update or not use_batch_stats else None,
            self.running_var if update or not use_batch_stats else None,
            self.weight, self.bias, training=use_batch_stats, momentum=momentum, eps=self.eps,
        )

    def extra_repr(self):
        return (f"{self.num_features}, eps={self.eps}, momentum={self.momentum}, affine={self.affine}, "
                f"track_running_stats={self.track_running_stats}")


class LocalResponseNorm(Module):
    """Cross-channel local response normalization (Krizhevsky et al., 2012), PyTorch's formula:
    b_c = a_c / (k + alpha / size * sum_{c' near c} a_{c'}^2) ** beta."""

    def __init__(self, size, alpha=1e-4, beta=0.75, k=1.0):
        super().__init__()
        self.size = _positive_int(size, "size")
        self.alpha, self.beta, self.k = float(alpha), float(beta), float(k)

    def forward(self, x):
        return F.local_response_norm(x, self.size, self.alpha, self.beta, self.k)

    def extra_repr(self):
        return f"{self.size}, alpha={self.alpha}, beta={self.beta}, k={self.k}"


class Flatten(Module):
    """Flatten dimensions ``start_dim`` .. ``end_dim`` into one (default: all but the batch axis)."""

    def __init__(self, start_dim=1, end_dim=-1):
        super().__init__()
        self.start_dim, self.end_dim = int(start_dim), int(end_dim)

    def forward(self, x):
        ndim = x.ndim
        start = self.start_dim % ndim if ndim else 0
        end = self.end_dim % ndim if ndim else 0
        if start > end:
            raise ValueError(f"Flatten: start_dim {self.start_dim} comes after end_dim {self.end_dim} for shape {x.shape}")
        shape = tuple(x.shape)
        return x.reshape(shape[:start] + (-1,) + shape[end + 1:])

    def extra_repr(self):
        return f"start_dim={self.start_dim}, end_dim={self.end_dim}"


class Upsample(Module):
    """Resize by ``size`` or ``scale_factor`` with "nearest" or "bilinear" sampling."""

    def __init__(self, size=None, scale_factor=None, mode="nearest", align_corners=None):
        super().__init__()
        if (size is None) == (scale_factor is None):
            raise ValueError("Upsample needs exactly one of size and scale_factor")
        if mode not in ("nearest", "bilinear"):
            raise ValueError(f"Upsample mode must be 'nearest' or 'bilinear', got {mode!r}")
        if mode == "nearest" and align_corners:
            raise ValueError("align_corners applies only to mode='bilinear'")
        if scale_factor is not None:
            scale_factor = (float(scale_factor) if np.isscalar(scale_factor)
                            else tuple(float(s) for s in scale_factor))
        self.size, self.scale_factor, self.mode, self.align_corners = size, scale_factor, mode, align_corners

    def forward(self, x):
        return F.interpolate(x, size=self.size, scale_factor=self.scale_factor, mode=self.mode,
                             align_corners=bool(self.align_corners))

    def extra_repr(self):
        what = f"size={self.size}" if self.size is not None else f"scale_factor={self.scale_factor}"
        return f"{what}, mode={self.mode!r}"
