"""The autograd machinery: graph building, traversal, accumulation, freeing, modes, errors."""

import gc
import weakref

import numpy as np
import pytest

import minigrad
from minigrad import functional as F
from minigrad.function import unbroadcast


def test_fan_out_accumulates():
    x = minigrad.tensor(np.array([1.0, 2.0, 3.0]), requires_grad=True)
    y = x * x + x  # x used three times
    y.sum().backward()
    np.testing.assert_allclose(x.grad, 2 * x.data + 1)


def test_diamond_graph():
    x = minigrad.tensor(np.array([0.5, -1.5]), requires_grad=True)
    a = x.exp()
    b = a * 2.0
    c = a * a
    (b + c).sum().backward()
    np.testing.assert_allclose(x.grad, 2 * np.exp(x.data) + 2 * np.exp(2 * x.data))


def test_leaf_grad_accumulates_across_backward_calls():
    x = minigrad.tensor(np.ones(2), requires_grad=True)
    (x * 3.0).sum().backward()
    (x * 4.0).sum().backward()
    np.testing.assert_allclose(x.grad, [7.0, 7.0])
    x.grad = None
    (x * 2.0).sum().backward()
    np.testing.assert_allclose(x.grad, [2.0, 2.0])


def test_deep_graph_needs_no_recursion():
    x = minigrad.tensor(np.ones(1), requires_grad=True)
    y = x
    for _ in range(10_000):
        y = y + 1.0
    y.sum().backward()
    np.testing.assert_allclose(x.grad, [1.0])


def test_graph_is_freed_after_backward():
    x = minigrad.tensor(np.ones(3), requires_grad=True)
    hidden = x * 2.0
    probe = weakref.ref(hidden)
    y = (hidden * hidden).sum()
    del hidden
    y.backward()
    gc.collect()
    assert probe() is None, "an intermediate tensor outlived backward()"
    with pytest.raises(RuntimeError, match="retain_graph=True"):
        y.backward()


def test_retain_graph_allows_a_second_backward():
    x = minigrad.tensor(np.array([2.0]), requires_grad=True)
    y = (x * x).sum()
    y.backward(retain_graph=True)
    y.backward()
    np.testing.assert_allclose(x.grad, [8.0])


def test_no_grad_records_nothing():
    x = minigrad.tensor(np.ones(2), requires_grad=True)
    with minigrad.no_grad():
        y = x * 2.0
        with minigrad.enable_grad():
            z = x * 3.0
    assert not y.requires_grad and y.is_leaf
    assert z.requires_grad
    assert minigrad.is_grad_enabled()


def test_detach_cuts_the_graph():
    x = minigrad.tensor(np.array([3.0]), requires_grad=True)
    y = x * x.detach()
    y.sum().backward()
    np.testing.assert_allclose(x.grad, [3.0])


def test_retain_grad_keeps_an_intermediate_gradient():
    x = minigrad.tensor(np.array([1.0, 2.0]), requires_grad=True)
    h = (x * 3.0).retain_grad()
    (h * h).sum().backward()
    np.testing.assert_allclose(h.grad, 2 * h.data)
    np.testing.assert_allclose(x.grad, 6 * h.data)


@pytest.mark.parametrize(
    "grad_shape, shape",
    [((4, 3), (3,)), ((4, 3), (1, 3)), ((4, 3), (4, 1)), ((2, 4, 3), (4, 1)), ((2, 1, 3), (1, 1, 1)), ((3,), ())],
)
def test_unbroadcast_sums_expanded_axes(grad_shape, shape):
    grad = np.arange(np.prod(grad_shape), dtype=float).reshape(grad_shape)
    reduced = unbroadcast(grad, shape)
    assert reduced.shape == shape
    assert reduced.sum() == pytest.approx(grad.sum())


def test_float32_by_default_and_float64_kept():
    assert minigrad.tensor([1.0, 2.0]).dtype == np.float32
    assert minigrad.tensor(np.ones(2)).dtype == np.float64
    assert (minigrad.tensor(np.ones(2, np.float32)) * 2.0).dtype == np.float32
    x = minigrad.tensor(np.ones(2), requires_grad=True)
    (x * 2.0).sum().backward()
    assert x.grad.dtype == np.float64


def test_needs_input_grad_skips_frozen_inputs():
    seen = {}

    class Probe(minigrad.Function):
        @staticmethod
        def forward(ctx, a, b):
            return a * b

        @staticmethod
        def backward(ctx, grad):
            seen["needs"] = ctx.needs_input_grad
            return grad, None

    a = minigrad.tensor(np.ones(2), requires_grad=True)
    Probe.apply(a, np.ones(2)).sum().backward()
    assert seen["needs"] == (True, False)


def test_wrong_number_of_gradients_is_reported():
    class Broken(minigrad.Function):
        @staticmethod
        def forward(ctx, a, b):
            return a + b

        @staticmethod
        def backward(ctx, grad):
            return (grad,)

    a = minigrad.tensor(np.ones(2), requires_grad=True)
    with pytest.raises(RuntimeError, match="returned 1 gradients for 2 inputs"):
        Broken.apply(a, a).sum().backward()


def test_relu_rules_on_one_forward():
    x = minigrad.tensor(np.array([[-1.0, 2.0, 3.0, -4.0]]), requires_grad=True)
    y = F.relu(x)
    upstream = np.array([[5.0, -6.0, 7.0, 8.0]])
    expected = {
        "standard": [[0.0, -6.0, 7.0, 0.0]],
        "deconvnet": [[5.0, 0.0, 7.0, 8.0]],
        "guided": [[0.0, 0.0, 7.0, 0.0]],
    }
    for rule, want in expected.items():
        x.grad = None
        with minigrad.relu_backward(rule):
            y.backward(upstream, retain_graph=True)
        np.testing.assert_array_equal(x.grad, want, err_msg=rule)


def test_relu_rule_is_read_at_backward_time():
    x = minigrad.tensor(np.array([1.0, -1.0]), requires_grad=True)
    with minigrad.relu_backward("deconvnet"):
        y = F.relu(x)
    y.backward(np.array([1.0, 1.0]))
    np.testing.assert_array_equal(x.grad, [1.0, 0.0])


def test_errors_name_the_problem():
    with pytest.raises(ValueError, match="unknown ReLU backward rule 'gided'"):
        minigrad.relu_backward("gided")
    with pytest.raises(TypeError, match="only floating-point tensors"):
        minigrad.tensor(np.arange(3), requires_grad=True)
    with pytest.raises(RuntimeError, match="does not require grad"):
        minigrad.tensor(np.ones(2)).sum().backward()
    with pytest.raises(RuntimeError, match="single-element tensor"):
        (minigrad.tensor(np.ones(2), requires_grad=True) * 2.0).backward()
    x = minigrad.tensor(np.ones(2), requires_grad=True)
    with pytest.raises(ValueError, match=r"gradient of shape \(3,\) for a tensor of shape \(2,\)"):
        (x * 2.0).backward(np.ones(3))
    with pytest.raises(ValueError, match="cannot reshape"):
        x.reshape(3)
    with pytest.raises(TypeError, match="not a numeric array"):
        minigrad.tensor({"a": 1})


def test_mixing_numpy_and_cupy_is_refused(monkeypatch):
    """A fake 'cupy' module is enough to show the device check fires before any arithmetic."""
    import sys
    import types

    class FakeArray(np.ndarray):
        pass

    fake = types.ModuleType("cupy")
    fake.ndarray = FakeArray
    monkeypatch.setitem(sys.modules, "cupy", fake)
    gpu = np.ones(2).view(FakeArray)
    with pytest.raises(TypeError, match="both NumPy \\(cpu\\) and CuPy \\(cuda\\)"):
        minigrad.tensor(np.ones(2)) + minigrad.tensor(gpu)


def test_cuda_without_cupy_is_a_clear_error(monkeypatch):
    import sys

    monkeypatch.setitem(sys.modules, "cupy", None)
    with pytest.raises(RuntimeError, match=r'needs CuPy: install it with pip install -e "\.\[gpu\]"'):
        minigrad.tensor(np.ones(2)).to("cuda")


# ----- hooks and the public gradient checker ---------------------------------------------------


def test_tensor_hook_sees_and_replaces_the_gradient():
    x = minigrad.tensor(np.array([1.0, -2.0, 3.0]), requires_grad=True)
    y = x * 2.0
    seen = []
    handle = y.register_hook(lambda g: seen.append(g.numpy().copy()) or g * 3.0)
    (y * np.array([1.0, 10.0, 100.0])).sum().backward()
    np.testing.assert_array_equal(seen[0], [1.0, 10.0, 100.0])
    np.testing.assert_array_equal(x.grad, [6.0, 60.0, 600.0])
    handle.remove()
    x.grad = None
    (x * 2.0).sum().backward()
    np.testing.assert_array_equal(x.grad, [2.0, 2.0, 2.0])


def test_tensor_hook_on_a_leaf_runs_before_accumulation_and_checks_shape():
    x = minigrad.tensor(np.ones(2), requires_grad=True)
    x.register_hook(lambda g: g * 0.5)
    (x * 4.0).sum().backward()
    np.testing.assert_array_equal(x.grad, [2.0, 2.0])
    z = minigrad.tensor(np.ones(2), requires_grad=True)
    z.register_hook(lambda g: np.ones(3))
    with pytest.raises(RuntimeError, match="hook returned shape"):
        z.sum().backward()
    with pytest.raises(RuntimeError, match="does not require grad"):
        minigrad.tensor(np.ones(2)).register_hook(lambda g: g)


def test_module_backward_hook_gets_grad_input_and_grad_output_and_may_replace_it():
    from minigrad import nn

    rng = np.random.default_rng(0)
    conv = nn.Conv2d(2, 3, 3, padding=1, dtype=np.float64)
    x = minigrad.tensor(rng.standard_normal((1, 2, 5, 5)), requires_grad=True)
    seed = rng.standard_normal((1, 3, 5, 5))
    calls = []

    def hook(module, grad_input, grad_output):
        calls.append((module, grad_input[0].numpy().copy(), grad_output[0].numpy().copy()))
        return (grad_input[0] * 2.0,)

    conv(x).backward(seed)
    plain = x.grad.copy()
    x.grad = None
    handle = conv.register_full_backward_hook(hook)
    conv(x).backward(seed)
    module, grad_input, grad_output = calls[0]
    assert module is conv and len(calls) == 1
    np.testing.assert_allclose(grad_output, seed)
    np.testing.assert_allclose(grad_input, plain)
    np.testing.assert_allclose(x.grad, 2.0 * plain)
    handle.remove()
    x.grad = None
    conv(x).backward(seed)
    np.testing.assert_allclose(x.grad, plain)


def test_module_backward_hook_with_an_input_that_needs_no_gradient():
    from minigrad import nn

    lin = nn.Linear(3, 2, dtype=np.float64)
    seen = []
    lin.register_full_backward_hook(lambda m, gi, go: seen.append((gi, go[0].numpy().copy())))
    lin(minigrad.tensor(np.ones((1, 3)))).sum().backward()
    assert seen[0][0] == (None,)
    np.testing.assert_array_equal(seen[0][1], np.ones((1, 2)))


def test_gradcheck_is_public_and_catches_a_wrong_backward():
    class Square(minigrad.Function):
        @staticmethod
        def forward(ctx, x, slack):
            ctx.save_for_backward(x)
            ctx.slack = slack
            return x * x

        @staticmethod
        def backward(ctx, grad):
            (x,) = ctx.saved_tensors
            return 2.0 * x * grad * ctx.slack

    x = np.random.default_rng(1).standard_normal((3, 4))
    assert minigrad.gradcheck(lambda t: Square.apply(t, slack=1.0), [x])
    with pytest.raises(minigrad.GradcheckError, match="finite differences"):
        minigrad.gradcheck(lambda t: Square.apply(t, slack=1.001), [x])
