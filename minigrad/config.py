"""Thread-local switches read while a graph is built or backpropagated.

``no_grad()`` stops recording (Chainer's ``no_backprop_mode``, PyTorch's ``no_grad``).
``relu_backward(rule)`` picks the rule every ReLU uses in the backward pass that runs inside
the block: the rule is read at backward time, so one recorded forward can be
backpropagated once per rule (with ``retain_graph=True``).
"""

import contextlib
import threading

RELU_RULES = ("standard", "deconvnet", "guided")

_local = threading.local()


def is_grad_enabled():
    return getattr(_local, "grad_enabled", True)


def current_relu_rule():
    return getattr(_local, "relu_rule", "standard")


@contextlib.contextmanager
def _setting(name, value, default):
    previous = getattr(_local, name, default)
    setattr(_local, name, value)
    try:
        yield
    finally:
        setattr(_local, name, previous)


def no_grad():
    """Inside the block, ops record no graph and their outputs do not require grad."""
    return _setting("grad_enabled", False, True)


def enable_grad():
    """Record the graph again inside a ``no_grad`` block."""
    return _setting("grad_enabled", True, True)


def relu_backward(rule):
    """Backpropagate every ReLU inside the block with ``rule``.

    "standard"  gx = gy * (x > 0), the true gradient;
    "deconvnet" gx = gy * (gy > 0), Zeiler & Fergus 2014 (the forward mask is ignored);
    "guided"    gx = gy * (x > 0) * (gy > 0), Springenberg et al. 2015.
    """
    if rule not in RELU_RULES:
        raise ValueError(f"unknown ReLU backward rule {rule!r}; choose one of {', '.join(RELU_RULES)}")
    return _setting("relu_rule", rule, "standard")
