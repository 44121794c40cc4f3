"""minigrad.nn: registration, state_dict round trips and strict loading, PyTorch key layout and
numerical parity (torch oracle, skipped without torch), hooks, initialization, train/eval."""

import copy
from collections import OrderedDict

import numpy as np
import pytest

import minigrad
from minigrad import nn


def tensor(array, requires_grad=False):
    return minigrad.tensor(np.asarray(array), requires_grad=requires_grad)


def randn(*shape, seed=0, dtype=np.float32):
    return np.random.default_rng(seed).standard_normal(shape).astype(dtype)


def build_net(mod, dropout=0.5):
    """A small VGG/AlexNet-shaped net, built from either minigrad.nn or torch.nn (same code)."""

    class Net(mod.Module):
        def __init__(self):
            super().__init__()
            self.features = mod.Sequential(
                mod.Conv2d(3, 8, 3, padding=1), mod.BatchNorm2d(8), mod.ReLU(), mod.MaxPool2d(2),
                mod.Conv2d(8, 12, 3, stride=2, padding=1, groups=4), mod.LeakyReLU(0.1),
                mod.LocalResponseNorm(5, alpha=1e-2, beta=0.75, k=2.0), mod.AvgPool2d(2, 1),
            )
            self.avgpool = mod.AdaptiveAvgPool2d((3, 3))
            self.classifier = mod.Sequential(
                mod.Flatten(), mod.Linear(12 * 9, 16), mod.ReLU(), mod.Dropout(dropout), mod.Linear(16, 5),
            )

        def forward(self, x):
            return self.classifier(self.avgpool(self.features(x)))

    return Net()


def torch_state_as_numpy(module):
    return {k: v.detach().numpy().copy() for k, v in module.state_dict().items()}


# ----- registration and traversal -----------------------------------------------------------------


def test_attribute_assignment_registers_in_order_and_can_be_replaced():
    m = nn.Module()
    m.b = nn.Parameter(np.zeros(2, np.float32))
    m.a = nn.Linear(2, 3)
    m.register_buffer("stats", np.ones(3))
    m.plain = 5
    assert list(m._parameters) == ["b"] and list(m._modules) == ["a"] and m.plain == 5
    assert [name for name, _ in m.named_parameters()] == ["b", "a.weight", "a.bias"]
    assert list(m.state_dict()) == ["b", "stats", "a.weight", "a.bias"]
    m.b = nn.Linear(1, 1)  # a name moves from one registry to another
    assert "b" not in m._parameters and list(m._modules) == ["a", "b"]
    m.a = None
    assert [name for name, _ in m.named_children()] == ["b"]
    del m.stats
    assert list(m.state_dict()) == ["b.weight", "b.bias"]
    assert "a" in dir(m) and "b" in dir(m)


def test_registration_errors_are_clear():
    lin = nn.Linear(2, 2)
    with pytest.raises(TypeError, match="cannot assign Tensor to parameter 'weight'.*nn.Parameter"):
        lin.weight = tensor(np.zeros((2, 2), np.float32))
    with pytest.raises(TypeError, match="buffer 'x' must be a NumPy or CuPy array"):
        lin.register_buffer("x", [1, 2])
    with pytest.raises(KeyError, match="without '.'"):
        lin.register_buffer("a.b", np.zeros(1))

    class Forgot(nn.Module):
        def __init__(self):
            self.fc = nn.Linear(2, 2)

    with pytest.raises(AttributeError, match=r"super\(\).__init__\(\) first"):
        Forgot()
    with pytest.raises(AttributeError, match="'Linear' object has no attribute 'wieght'"):
        lin.wieght
    with pytest.raises(NotImplementedError, match="Module does not define forward"):
        nn.Module()(1)


def test_traversal_and_shared_parameters():
    net = build_net(nn)
    names = [name for name, _ in net.named_modules()]
    assert names[:4] == ["", "features", "features.0", "features.1"] and "classifier.4" in names
    assert [name for name, _ in net.named_children()] == ["features", "avgpool", "classifier"]
    assert sum(p.size for p in net.parameters()) == 8 * 27 + 8 + 16 + 12 * 2 * 9 + 12 + 108 * 16 + 16 + 16 * 5 + 5
    assert all(isinstance(p, nn.Parameter) and p.requires_grad for p in net.parameters())
    assert [n for n, _ in net.named_buffers()] == ["features.1.running_mean", "features.1.running_var",
                                                   "features.1.num_batches_tracked"]
    # a module registered twice: parameters once, state_dict under both names (as in PyTorch)
    shared = nn.Linear(2, 2)
    twice = nn.Sequential(shared, nn.ReLU(), shared)
    assert len(list(twice.parameters())) == 2
    assert list(twice.state_dict()) == ["0.weight", "0.bias", "2.weight", "2.bias"]
    seen = []
    twice.apply(lambda m: seen.append(type(m).__name__))
    assert seen == ["Linear", "ReLU", "Sequential"]


def test_sequential_indexing_slicing_and_construction():
    layers = [nn.Conv2d(1, 2, 3), nn.ReLU(), nn.MaxPool2d(2), nn.Flatten()]
    seq = nn.Sequential(*layers)
    assert len(seq) == 4 and seq[0] is layers[0] and seq[-1] is layers[3] and list(seq) == layers
    head = seq[1:3]
    assert isinstance(head, nn.Sequential) and list(head._modules) == ["1", "2"] and head[0] is layers[1]
    with pytest.raises(IndexError, match="out of range"):
        seq[4]
    named = nn.Sequential(OrderedDict([("conv", nn.Conv2d(1, 2, 3)), ("relu", nn.ReLU())]))
    assert list(named.state_dict()) == ["conv.weight", "conv.bias"] and named["relu"] is named[1]
    seq.append(nn.Linear(2, 2))
    assert list(seq._modules)[-1] == "4"
    with pytest.raises(TypeError, match="argument 1 is int"):
        nn.Sequential(nn.ReLU(), 3)
    x = tensor(randn(2, 1, 8, 8))
    np.testing.assert_allclose(seq[:4](x).numpy(), layers[3](layers[2](layers[1](layers[0](x)))).numpy())
    ml = nn.ModuleList([nn.Linear(1, 1), nn.Linear(1, 2)])
    assert len(ml) == 2 and list(ml.state_dict())[0] == "0.weight" and ml[1].out_features == 2


def test_repr_matches_torch_for_default_layers():
    torch = pytest.importorskip("torch")

    def layers(mod):
        return mod.Sequential(mod.Conv2d(3, 8, 3, stride=2, padding=1, dilation=2, groups=1, bias=False),
                              mod.ReLU(), mod.MaxPool2d(3, 2, 1), mod.LeakyReLU(0.2), mod.AvgPool2d(2),
                              mod.LocalResponseNorm(5), mod.AdaptiveAvgPool2d((2, 2)), mod.Flatten(),
                              mod.Linear(32, 10), mod.Dropout(), mod.Upsample(scale_factor=2))

    assert repr(layers(nn)) == repr(layers(torch.nn))
    assert repr(nn.BatchNorm2d(4)).startswith("BatchNorm2d(4, eps=1e-05, momentum=0.1, affine=True")
    assert repr(nn.Parameter(np.zeros(2, np.float32))).startswith("Parameter containing:\ntensor(")


# ----- state_dict -----------------------------------------------------------------------------------


def test_state_dict_round_trip_through_a_file(tmp_path):
    minigrad.manual_seed(0)
    a = build_net(nn)
    a.train()
    a(tensor(randn(4, 3, 16, 16)))  # moves the BN running statistics away from their init
    minigrad.manual_seed(1)
    b = build_net(nn)
    state = a.state_dict()
    assert all(isinstance(v, np.ndarray) for v in state.values())
    assert state["features.1.num_batches_tracked"].shape == () and state["features.1.num_batches_tracked"] == 1
    np.savez(tmp_path / "net.npz", **state)
    with np.load(tmp_path / "net.npz") as saved:
        result = b.load_state_dict(dict(saved))
    assert result.missing_keys == [] and result.unexpected_keys == []
    for key, value in b.state_dict().items():
        np.testing.assert_array_equal(value, state[key])
        assert value.dtype == state[key].dtype
    a.eval(), b.eval()
    x = tensor(randn(2, 3, 16, 16, seed=5))
    np.testing.assert_array_equal(a(x).numpy(), b(x).numpy())
    # the state_dict is a snapshot, and loading copies: neither aliases the model afterwards
    weight = a.features[0].weight
    weight.data += 1
    assert not np.array_equal(state["features.0.weight"], weight.data)
    assert not np.shares_memory(b.features[0].weight.data, state["features.0.weight"])


def test_load_keeps_parameter_identity_and_converts_dtype():
    lin = nn.Linear(3, 2)
    weight, data = lin.weight, lin.weight.data
    values = {"weight": np.arange(6, dtype=np.float64).reshape(2, 3) / 7, "bias": [0.5, -0.5]}
    lin.load_state_dict(values)
    assert lin.weight is weight and lin.weight.data is data and data.dtype == np.float32
    np.testing.assert_array_equal(data, values["weight"].astype(np.float32))
    np.testing.assert_array_equal(lin.bias.data, np.array([0.5, -0.5], np.float32))
    lin.load_state_dict({"weight": tensor(np.ones((2, 3), np.float32)), "bias": np.zeros(2)})
    assert np.all(lin.weight.data == 1)
    with pytest.raises(nn.StateDictError, match="'bias' is not a numeric array"):
        lin.load_state_dict({"weight": np.ones((2, 3)), "bias": np.array(["a", "b"])})


def test_strict_load_lists_every_problem_and_changes_nothing():
    net = build_net(nn)
    before = net.state_dict()
    bad = dict(before)
    del bad["features.0.bias"]
    del bad["classifier.4.weight"]
    bad["features.9.weight"] = np.zeros(3)
    bad["classifier.1.weight"] = np.zeros((16, 100), np.float32)
    bad["features.0.weight"] = np.zeros((8, 3, 5, 5), np.float32)
    bad["features.1.running_mean"] = np.full(8, 7.0, np.float32)  # valid, but must not be applied
    with pytest.raises(nn.StateDictError) as info:
        net.load_state_dict(bad)
    message, error = str(info.value), info.value
    for text in ["missing key(s): features.0.bias, classifier.4.weight", "unexpected key(s): features.9.weight",
                 "shape mismatch for classifier.1.weight: checkpoint has (16, 100), the model has (16, 108)",
                 "shape mismatch for features.0.weight: checkpoint has (8, 3, 5, 5), the model has (8, 3, 3, 3)",
                 "nothing was loaded"]:
        assert text in message
    assert error.missing_keys == ["features.0.bias", "classifier.4.weight"]
    assert error.unexpected_keys == ["features.9.weight"]
    assert [k for k, _, _ in error.mismatched] == ["features.0.weight", "classifier.1.weight"]
    for key, value in net.state_dict().items():
        np.testing.assert_array_equal(value, before[key])


def test_non_strict_load_reports_keys_but_shape_mismatch_is_still_an_error():
    net = build_net(nn)
    partial = {k: v for k, v in build_net(nn).state_dict().items() if k.startswith("features.")}
    partial["extra"] = np.zeros(1)
    result = net.load_state_dict(partial, strict=False)
    assert result.unexpected_keys == ["extra"]
    assert result.missing_keys == ["classifier.1.weight", "classifier.1.bias", "classifier.4.weight",
                                   "classifier.4.bias"]
    np.testing.assert_array_equal(net.features[0].weight.data, partial["features.0.weight"])
    partial["features.0.bias"] = np.zeros(9, np.float32)
    with pytest.raises(nn.StateDictError, match="shape mismatch for features.0.bias"):
        net.load_state_dict(partial, strict=False)


def test_batchnorm_checkpoint_without_num_batches_tracked_loads():
    bn = nn.BatchNorm2d(3)
    state = {k: v for k, v in bn.state_dict().items() if k != "num_batches_tracked"}
    assert bn.load_state_dict(state).missing_keys == []


# ----- PyTorch parity -------------------------------------------------------------------------------


def test_state_dict_keys_match_torch_and_torch_weights_give_torch_outputs():
    torch = pytest.importorskip("torch")
    ours, theirs = build_net(nn, dropout=0.0), build_net(torch.nn, dropout=0.0)
    assert list(ours.state_dict()) == list(theirs.state_dict())
    theirs.train()
    theirs(torch.from_numpy(randn(4, 3, 16, 16, seed=9)))  # non-trivial running statistics
    ours.load_state_dict(theirs.state_dict())  # torch tensors are accepted as they are
    x = randn(2, 3, 16, 16, seed=1)
    for mode in ("eval", "train"):
        getattr(ours, mode)(), getattr(theirs, mode)()
        xm, xt = tensor(x, requires_grad=True), torch.tensor(x, requires_grad=True)
        ym, yt = ours(xm), theirs(xt)
        np.testing.assert_allclose(ym.numpy(), yt.detach().numpy(), rtol=1e-4, atol=1e-5, err_msg=mode)
        # backprop to the image through the same weights
        ym.backward(np.arange(10, dtype=np.float32).reshape(2, 5))
        yt.backward(torch.arange(10, dtype=torch.float32).reshape(2, 5))
        np.testing.assert_allclose(xm.grad, xt.grad.numpy(), rtol=1e-4, atol=1e-5, err_msg=mode)
        for (name, p), (_, q) in zip(ours.named_parameters(), theirs.named_parameters()):
            np.testing.assert_allclose(p.grad, q.grad.numpy(), rtol=1e-3, atol=1e-4, err_msg=f"{mode} {name}")
        ours.zero_grad(), theirs.zero_grad()
    # the training forward updated the running statistics identically
    for key, value in torch_state_as_numpy(theirs).items():
        np.testing.assert_allclose(ours.state_dict()[key], value, rtol=1e-5, atol=1e-6, err_msg=key)


@pytest.mark.parametrize("kwargs", [
    dict(in_channels=3, out_channels=4, kernel_size=3),
    dict(in_channels=4, out_channels=6, kernel_size=(3, 2), stride=(2, 1), padding=(1, 2), bias=False),
    dict(in_channels=4, out_channels=8, kernel_size=3, padding=2, dilation=2, groups=2),
    dict(in_channels=6, out_channels=6, kernel_size=5, stride=3, padding=2, groups=6),
])
def test_conv2d_matches_torch(kwargs):
    torch = pytest.importorskip("torch")
    ours, theirs = nn.Conv2d(**kwargs), torch.nn.Conv2d(**kwargs)
    ours.load_state_dict(theirs.state_dict())
    x = randn(2, kwargs["in_channels"], 11, 10)
    np.testing.assert_allclose(ours(tensor(x)).numpy(), theirs(torch.from_numpy(x)).detach().numpy(),
                               rtol=1e-5, atol=1e-5)


def test_linear_matches_torch():
    torch = pytest.importorskip("torch")
    for bias in (True, False):
        ours, theirs = nn.Linear(7, 4, bias=bias), torch.nn.Linear(7, 4, bias=bias)
        ours.load_state_dict(theirs.state_dict())
        for shape in ((5, 7), (2, 3, 7)):
            x = randn(*shape)
            np.testing.assert_allclose(ours(tensor(x)).numpy(), theirs(torch.from_numpy(x)).detach().numpy(),
                                       rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("kwargs", [dict(), dict(momentum=None), dict(affine=False, momentum=0.3),
                                    dict(track_running_stats=False)])
def test_batchnorm2d_matches_torch_in_train_and_eval(kwargs):
    torch = pytest.importorskip("torch")
    ours, theirs = nn.BatchNorm2d(5, **kwargs), torch.nn.BatchNorm2d(5, **kwargs)
    if ours.weight is not None:
        with torch.no_grad():
            theirs.weight.uniform_(0.5, 1.5)
            theirs.bias.uniform_(-1, 1)
    ours.load_state_dict(theirs.state_dict())
    for step in range(3):
        x = randn(4, 5, 6, 7, seed=step) * (step + 1) + step
        y_ours, y_theirs = ours(tensor(x)), theirs(torch.from_numpy(x))
        np.testing.assert_allclose(y_ours.numpy(), y_theirs.detach().numpy(), rtol=1e-4, atol=1e-5)
    for key, value in torch_state_as_numpy(theirs).items():
        np.testing.assert_allclose(ours.state_dict()[key], value, rtol=1e-5, atol=1e-6, err_msg=key)
    ours.eval(), theirs.eval()
    x = randn(2, 5, 3, 3, seed=7)
    np.testing.assert_allclose(ours(tensor(x)).numpy(), theirs(torch.from_numpy(x)).detach().numpy(),
                               rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("size, alpha, beta, k", [(5, 1e-4, 0.75, 1.0), (3, 0.5, 0.9, 2.0), (4, 1.0, 0.5, 1.0)])
def test_local_response_norm_matches_torch(size, alpha, beta, k):
    torch = pytest.importorskip("torch")
    x = randn(2, 7, 4, 5) * 3
    ours = nn.LocalResponseNorm(size, alpha, beta, k)(tensor(x)).numpy()
    theirs = torch.nn.LocalResponseNorm(size, alpha, beta, k)(torch.from_numpy(x)).numpy()
    np.testing.assert_allclose(ours, theirs, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("make", [
    lambda m: m.MaxPool2d(3, 2, 1), lambda m: m.AvgPool2d(3, 2, 1), lambda m: m.AvgPool2d(2),
    lambda m: m.AvgPool2d(3, 1, 1, count_include_pad=False), lambda m: m.AdaptiveAvgPool2d(4),
    lambda m: m.AdaptiveAvgPool2d((3, 5)), lambda m: m.LeakyReLU(0.2), lambda m: m.ReLU(),
    lambda m: m.Flatten(), lambda m: m.Flatten(2), lambda m: m.Upsample(scale_factor=2),
    lambda m: m.Upsample(size=(5, 7), mode="bilinear"),
    lambda m: m.Upsample(scale_factor=1.5, mode="bilinear", align_corners=True),
], ids=lambda f: "")
def test_parameter_free_layers_match_torch(make):
    torch = pytest.importorskip("torch")
    x = randn(2, 3, 9, 10)
    np.testing.assert_allclose(make(nn)(tensor(x)).numpy(), make(torch.nn)(torch.from_numpy(x)).numpy(),
                               rtol=1e-5, atol=1e-6)


# ----- initialization -------------------------------------------------------------------------------


@pytest.mark.parametrize("make, fan_in", [
    (lambda m: m.Conv2d(64, 128, 3), 64 * 9),
    (lambda m: m.Conv2d(16, 32, (5, 3), groups=4), 4 * 15),
    (lambda m: m.Linear(700, 300), 700),
])
def test_default_init_matches_pytorch_bounds_and_statistics(make, fan_in):
    """kaiming_uniform(a=sqrt(5)) for weights and U(+-1/sqrt(fan_in)) for biases, as in PyTorch."""
    minigrad.manual_seed(0)
    layer = make(nn)
    bound = 1 / np.sqrt(fan_in)
    bound32 = np.float32(bound)  # float32 draws may round up onto the float32 bound itself
    for p in (layer.weight.data, layer.bias.data):
        assert p.dtype == np.float32 and np.abs(p).max() <= bound32
        assert np.abs(p).max() > bound * (1 - 20 / p.size)  # the range is used up to its end
    w = layer.weight.data.astype(np.float64).ravel()
    # U(-b, b): mean 0, std b / sqrt(3); tolerances are 5 standard errors
    assert abs(w.mean()) < 5 * bound / np.sqrt(3 * w.size)
    assert abs(w.std() / (bound / np.sqrt(3)) - 1) < 5 * 0.9 / np.sqrt(w.size)
    torch = pytest.importorskip("torch")
    torch.manual_seed(0)
    theirs = make(torch.nn)
    assert theirs.weight.shape == layer.weight.shape and theirs.bias.shape == layer.bias.shape
    for ours, t in ((layer.weight.data, theirs.weight), (layer.bias.data, theirs.bias)):
        t = t.detach().numpy()
        assert np.abs(t).max() <= bound32
        if t.size > 1000:
            assert abs(ours.std() / t.std() - 1) < 0.05


def test_init_is_reproducible_given_a_seed_and_init_helpers_work():
    minigrad.manual_seed(3)
    a = build_net(nn)
    minigrad.manual_seed(3)
    b = build_net(nn)
    c = build_net(nn)
    for key, value in a.state_dict().items():
        np.testing.assert_array_equal(value, b.state_dict()[key])
    assert not np.array_equal(a.state_dict()["features.0.weight"], c.state_dict()["features.0.weight"])
    conv = nn.Conv2d(32, 64, 3)
    nn.init.kaiming_normal_(conv.weight, mode="fan_out", nonlinearity="relu")
    assert abs(conv.weight.data.std() / np.sqrt(2 / (64 * 9)) - 1) < 0.05
    nn.init.zeros_(conv.bias)
    assert np.all(conv.bias.data == 0) and conv.bias.dtype == np.float32


def test_deepcopy_gives_an_independent_model():
    net = build_net(nn)
    twin = copy.deepcopy(net)
    assert list(twin.state_dict()) == list(net.state_dict()) and repr(twin) == repr(net)
    twin.features[0].weight.data += 1
    twin.features[1].running_mean += 1
    np.testing.assert_array_equal(net.features[0].weight.data + 1, twin.features[0].weight.data)
    assert np.all(net.features[1].running_mean == 0)


def test_layers_accept_a_dtype():
    conv = nn.Conv2d(2, 3, 3, dtype=np.float64)
    bn = nn.BatchNorm2d(3, dtype=np.float64)
    assert conv.weight.dtype == np.float64 and bn.running_var.dtype == np.float64
    assert nn.Parameter(np.zeros(2)).dtype == np.float64  # Parameter keeps the array's dtype


# ----- hooks ----------------------------------------------------------------------------------------


def test_forward_hooks_fire_replace_and_remove():
    net = build_net(nn).eval()
    seen = []
    handle = net.features[2].register_forward_hook(lambda m, inputs, output: seen.append((m, inputs, output)))
    x = tensor(randn(1, 3, 16, 16))
    y = net(x)
    assert len(seen) == 1 and seen[0][0] is net.features[2] and isinstance(seen[0][1], tuple)
    np.testing.assert_array_equal(seen[0][2].numpy(), np.maximum(seen[0][1][0].numpy(), 0))
    handle.remove()
    net(x)
    assert len(seen) == 1
    handle.remove()  # removing twice is harmless
    # a hook's return value replaces the output; hooks run in registration order
    order = []
    h1 = net.classifier.register_forward_hook(lambda m, i, o: order.append(1) or o * 0.0)
    h2 = net.classifier.register_forward_hook(lambda m, i, o: order.append(2))
    assert np.all(net(x).numpy() == 0) and order == [1, 2]
    h1.remove(), h2.remove()
    np.testing.assert_array_equal(net(x).numpy(), y.numpy())
    # as a context manager, and a pre-hook that rewrites the input
    with net.features.register_forward_pre_hook(lambda m, inputs: (inputs[0] * 0.0,)):
        zeroed = net(x).numpy()
    np.testing.assert_allclose(zeroed, net(tensor(np.zeros_like(x.numpy()))).numpy())
    np.testing.assert_array_equal(net(x).numpy(), y.numpy())
    with pytest.raises(TypeError, match="callable"):
        net.register_forward_hook("not a function")


def test_hooks_read_activations_and_gradients_flow_through_them():
    net = build_net(nn).eval()
    acts = {}
    for name, module in net.named_modules():
        if isinstance(module, nn.ReLU):
            module.register_forward_hook(lambda m, i, o, name=name: acts.__setitem__(name, o))
    x = tensor(randn(1, 3, 16, 16), requires_grad=True)
    net(x)
    assert sorted(acts) == ["classifier.2", "features.2"]
    acts["features.2"][0, 3].sum().backward()
    assert x.grad is not None and np.abs(x.grad).sum() > 0


# ----- modes, freezing, devices ---------------------------------------------------------------------


def test_train_eval_switch_dropout_and_batchnorm():
    net = build_net(nn)
    assert net.training and all(m.training for m in net.modules())
    assert net.eval() is net and not any(m.training for m in net.modules())
    net.train()
    drop = nn.Dropout(0.25)
    x = tensor(np.ones((100, 100), np.float32))
    minigrad.manual_seed(0)
    y = drop(x).numpy()
    assert abs((y == 0).mean() - 0.25) < 0.02 and np.allclose(y[y != 0], 1 / 0.75)
    minigrad.manual_seed(0)
    np.testing.assert_array_equal(drop(x).numpy(), y)  # deterministic given the seed
    np.testing.assert_array_equal(drop.eval()(x).numpy(), x.numpy())
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        nn.Dropout(1.5)

    bn = nn.BatchNorm2d(2)
    x = tensor(randn(8, 2, 4, 4) * 3 + 5)
    y = bn(x).numpy()  # training: batch statistics
    np.testing.assert_allclose(y.mean(axis=(0, 2, 3)), 0, atol=1e-5)
    assert bn.num_batches_tracked == 1
    np.testing.assert_allclose(bn.running_mean, 0.1 * x.numpy().mean(axis=(0, 2, 3)), rtol=1e-5)
    bn.eval()
    y = bn(x).numpy()  # evaluation: running statistics, nothing updated
    expected = (x.numpy() - bn.running_mean[None, :, None, None]) / np.sqrt(bn.running_var[None, :, None, None] + 1e-5)
    np.testing.assert_allclose(y, expected, rtol=1e-5, atol=1e-5)
    assert bn.num_batches_tracked == 1
    with pytest.raises(ValueError, match=r"BatchNorm2d\(2\) got an input with 3 channels"):
        bn(tensor(randn(1, 3, 2, 2)))


def test_requires_grad_false_freezes_and_backprop_reaches_the_image_only():
    net = build_net(nn).eval().requires_grad_(False)
    x = tensor(randn(1, 3, 16, 16), requires_grad=True)
    net(x)[0, 2].backward()
    assert x.grad is not None and all(p.grad is None for p in net.parameters())
    net.requires_grad_(True)
    net(x)[0, 2].backward()
    assert all(p.grad is not None for p in net.parameters())
    net.zero_grad()
    assert all(p.grad is None for p in net.parameters())


def test_to_keeps_parameter_identity_and_casts_floating_state():
    net = build_net(nn).eval()
    params = list(net.parameters())
    x = randn(1, 3, 16, 16)
    y32 = net(tensor(x)).numpy()
    assert net.to("cpu") is net and list(net.parameters()) == params
    net.double()
    assert list(net.parameters()) == params and all(p.dtype == np.float64 for p in params)
    assert net.features[1].running_mean.dtype == np.float64
    assert net.features[1].num_batches_tracked.dtype == np.int64
    np.testing.assert_allclose(net(tensor(x.astype(np.float64))).numpy(), y32, rtol=1e-4, atol=1e-5)
    net.to(dtype="float32")
    assert all(p.dtype == np.float32 for p in params)
    with pytest.raises(ValueError, match="unknown device 'gpu'"):
        net.to("gpu")


@pytest.mark.gpu
def test_to_cuda_moves_parameters_and_buffers():
    cupy = pytest.importorskip("cupy")
    try:
        cupy.cuda.runtime.getDeviceCount()
    except Exception:  # pragma: no cover - depends on the machine
        pytest.skip("no CUDA device")
    net = build_net(nn).eval()
    params = list(net.parameters())
    x = randn(2, 3, 16, 16)
    expected = net(tensor(x)).numpy()
    state = net.state_dict()
    net.to("cuda")
    assert list(net.parameters()) == params
    assert all(isinstance(p.data, cupy.ndarray) for p in params)
    assert all(isinstance(b, cupy.ndarray) for b in net.buffers())
    y = net(tensor(x).to("cuda"))
    assert y.device == "cuda"
    np.testing.assert_allclose(y.numpy(), expected, rtol=1e-4, atol=1e-4)
    assert all(isinstance(v, np.ndarray) for v in net.state_dict().values())  # always NumPy
    net.load_state_dict(state)  # NumPy arrays into CuPy parameters
    assert isinstance(net.features[0].weight.data, cupy.ndarray)
    net.train()
    net(tensor(x).to("cuda"))  # BN updates its CuPy buffers in place
    assert int(net.features[1].num_batches_tracked) == 1
    net.to("cpu")
    assert all(isinstance(p.data, np.ndarray) for p in params)


@pytest.mark.parametrize("make, error, message", [
    (lambda: nn.Conv2d(3, 4, 0), ValueError, r"kernel_size must be >= 1, got 0"),
    (lambda: nn.Conv2d(3, 4, (3, -1)), ValueError, r"kernel_size must be >= 1"),
    (lambda: nn.Conv2d(3, 4, 3, stride=0), ValueError, r"stride must be >= 1"),
    (lambda: nn.Conv2d(3, 4, 3, stride=1.5), TypeError, r"stride must be an int or a pair of ints \(each >= 1\)"),
    (lambda: nn.Conv2d(3, 4, 3, padding=-1), ValueError, r"padding must be >= 0"),
    (lambda: nn.Conv2d(3, 4, 3, padding="same"), TypeError, r"padding must be an int or a pair of ints"),
    (lambda: nn.Conv2d(3, 4, 3, dilation=(1, 2, 3)), TypeError, r"dilation must be an int or a pair"),
    (lambda: nn.Conv2d(3, 4, 3, groups=0), ValueError, r"groups must be a positive integer"),
    (lambda: nn.Conv2d(3, 4, 3, groups=2), ValueError, r"groups=2 must divide in_channels=3"),
    (lambda: nn.Conv2d(0, 4, 3), ValueError, r"in_channels must be a positive integer"),
    (lambda: nn.MaxPool2d(0), ValueError, r"kernel_size must be >= 1"),
    (lambda: nn.MaxPool2d(2, padding=2), ValueError, r"padding \(2, 2\) must lie between 0 and kernel_size // 2"),
    (lambda: nn.AvgPool2d(3, stride=0), ValueError, r"stride must be >= 1"),
    (lambda: nn.AdaptiveAvgPool2d(0), ValueError, r"output_size must be >= 1"),
    (lambda: nn.BatchNorm2d(4, eps=0), ValueError, r"eps must lie in \(0.0, inf\]"),
    (lambda: nn.BatchNorm2d(4, momentum=1.5), ValueError, r"momentum must lie in \[0.0, 1.0\]"),
    (lambda: nn.LocalResponseNorm(0), ValueError, r"size must be a positive integer"),
    (lambda: nn.LocalResponseNorm(5, alpha="a"), TypeError, r"alpha must be a number"),
    (lambda: nn.LeakyReLU(float("nan")), ValueError, r"negative_slope must lie in"),
    (lambda: nn.Upsample(scale_factor=0), ValueError, r"scale_factor must lie in \(0.0, inf\]"),
    (lambda: nn.Upsample(size=(0, 4)), ValueError, r"size must be >= 1"),
    (lambda: nn.Flatten(1.5), TypeError, r"start_dim and end_dim must be ints"),
])
def test_layer_arguments_are_checked_when_the_layer_is_made(make, error, message):
    with pytest.raises(error, match=message):
        make()


def test_functional_arguments_name_the_argument_and_its_range():
    F = minigrad.functional
    x = minigrad.tensor(np.zeros((1, 3, 8, 8), np.float32))
    w = minigrad.tensor(np.zeros((4, 3, 3, 3), np.float32))
    with pytest.raises(TypeError, match=r"stride must be an int or a pair of ints \(each >= 1\), got 1.5"):
        F.conv2d(x, w, stride=1.5)
    with pytest.raises(ValueError, match=r"padding \(1000000, 1000000\) must lie between 0 and \(8, 8\)"):
        F.conv2d(x, w, padding=10**6)
    with pytest.raises(ValueError, match=r"dilation must be >= 1"):
        F.conv2d_relu(x, w, dilation=0)
    with pytest.raises(TypeError, match=r"kernel_size must be an int or a pair of ints"):
        F.max_pool2d(x, 2.5)
    with pytest.raises(ValueError, match=r"size must be a positive integer, got 1.5"):
        F.local_response_norm(x, 1.5)
    with pytest.raises(ValueError, match=r"pad widths must be non-negative ints"):
        F.pad(x, (1.5, 1))
    with pytest.raises(ValueError, match=r"axis 1.5 is out of range"):
        F.softmax(x, 1.5)
    # padding up to the input size (or the kernel's reach) is PyTorch's and is kept
    assert F.conv2d(x, w, padding=8).shape == (1, 4, 22, 22)
