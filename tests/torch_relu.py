"""minigrad's ReLU backward rules written for torch, once, for the oracle tests: a ReLU whose
backward follows the rule set when backward runs, as ``minigrad.relu_backward(rule)`` does.
Import it only where torch is installed (after ``pytest.importorskip("torch")``)."""

import contextlib

import torch


class RuleReLU(torch.autograd.Function):
    """ReLU forward; backward by ``RuleReLU.rule``: "standard" (autograd's own
    ``threshold_backward``), "deconvnet" (Zeiler & Fergus: the gradient's positive part, whatever
    the input) or "guided" (Springenberg et al.: both conditions)."""

    rule = "standard"

    @staticmethod
    def forward(ctx, x):
        y = torch.relu(x)
        ctx.save_for_backward(y)
        return y

    @staticmethod
    def backward(ctx, grad):
        (y,) = ctx.saved_tensors
        if RuleReLU.rule == "deconvnet":
            return torch.relu(grad)
        if RuleReLU.rule == "guided":
            grad = torch.relu(grad)
        return torch.ops.aten.threshold_backward(grad, y, 0)


class ReLU(torch.nn.Module):
    """:class:`RuleReLU` as a module, for torch twins built from layers."""

    def forward(self, x):
        return RuleReLU.apply(x)


@contextlib.contextmanager
def relu_rule(rule):
    """Inside the block, :class:`RuleReLU` backpropagates by ``rule``."""
    previous, RuleReLU.rule = RuleReLU.rule, rule
    try:
        yield
    finally:
        RuleReLU.rule = previous
