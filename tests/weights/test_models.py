"""minigrad.models: torchvision's layout and init, layer names and extract, preprocessing, labels,
and -- with torch installed -- converted torch checkpoints giving torch's logits."""

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

import minigrad
from minigrad import models, nn
from weights import CheckpointError, archs, imagenet_labels, load_file, registry

ROOT = Path(__file__).resolve().parents[2]


# ---------------------------------------------------------------------------------------------
# Structure (no weights drawn: init=None allocates zeros lazily, so this is cheap)


@pytest.mark.parametrize("arch", archs.ARCHS)
def test_state_dict_keys_and_shapes_are_torchvisions(arch):
    model = models.ConvNet(arch, init=None)
    sd = {k: v.shape for k, v in model.state_dict().items()}
    want = archs.expected_state(arch)
    extra = {k for k in sd if k not in want}
    assert all(k.endswith("num_batches_tracked") for k in extra)
    assert {k: sd[k] for k in want} == want
    assert sum(p.data.size for p in model.parameters()) == archs.num_parameters(arch)
    assert model.layer_names[-1] == "fc8" and "avgpool" in model.layer_names


def test_paper_layer_names():
    vgg16 = models.ConvNet("vgg16", init=None)
    names = vgg16.layer_names
    assert names[:5] == ("conv1_1", "relu1_1", "conv1_2", "relu1_2", "pool1")
    assert names[names.index("pool4") + 1 :] == (
        "conv5_1", "relu5_1", "conv5_2", "relu5_2", "conv5_3", "relu5_3", "pool5", "avgpool", "flatten",
        "fc6", "relu6", "drop6", "fc7", "relu7", "drop7", "fc8")
    # the notes' index table: relu4_2 = features.20, relu5_3 = features.29 in VGG16
    assert vgg16.layer("relu4_2") is vgg16.features[20]
    assert vgg16.layer("conv5_3") is vgg16.features[28]
    assert vgg16.layer("fc7") is vgg16.classifier[3]
    vgg19 = models.ConvNet("vgg19", init=None)
    assert vgg19.layer("relu4_2") is vgg19.features[22] and vgg19.layer("relu5_1") is vgg19.features[29]
    bn = models.ConvNet("vgg11_bn", init=None)
    assert isinstance(bn.layer("bn1_1"), nn.BatchNorm2d) and bn.layer("relu1_1") is bn.features[2]
    alex = models.ConvNet("alexnet", init=None)
    assert alex.layer_names == (
        "conv1", "relu1", "pool1", "conv2", "relu2", "pool2", "conv3", "relu3", "conv4", "relu4",
        "conv5", "relu5", "pool5", "avgpool", "flatten", "drop5", "fc6", "relu6", "drop6", "fc7", "relu7",
        "fc8")
    assert [n for n, _ in alex.layers()] == list(alex.layer_names)
    assert "flatten" not in repr(alex) and alex.input_shape == (3, 224, 224)
    assert alex.layer("fc6") is alex.classifier[1]
    assert alex.avgpool.output_size == (6, 6) and vgg16.avgpool.output_size == (7, 7)


def test_extract_runs_only_as_deep_as_needed_and_names_are_checked():
    model = models.ConvNet("alexnet", init=None).eval()
    calls = []
    for name in model.layer_names:
        model.layer(name).register_forward_hook(lambda m, i, o, name=name: calls.append(name))
    x = np.random.default_rng(0).random((1, 3, 64, 64), dtype=np.float32)
    out = model.extract(x, ["relu2", "conv1"])
    assert list(out) == ["relu2", "conv1"]
    assert calls == ["conv1", "relu1", "pool1", "conv2", "relu2"]
    assert out["conv1"].shape == (1, 64, 15, 15)
    with pytest.raises(ValueError, match="unknown layer 'relu9' for alexnet; its layers are: conv1, relu1"):
        model.extract(x, ["relu9"])
    with pytest.raises(ValueError, match="its layers are"):
        model.layer("features.0")
    assert model.extract(x, "flatten")["flatten"].shape == (1, 256 * 36)
    with pytest.raises(ValueError, match=r"takes a batch \(N, C, H, W\)"):
        model(np.zeros((3, 64, 64), np.float32))
    with pytest.raises(ValueError, match="32x32 images are too small for alexnet: layer pool5"):
        model(np.zeros((1, 3, 32, 32), np.float32))


def test_torchvision_init_statistics_and_seeding():
    # VGG's scheme on vgg11_bn; the 120M-weight classifier is swapped for small Linear layers
    # so the test draws only the convolutions (the scheme treats every Linear alike).
    vgg = models.ConvNet("vgg11_bn", init=None)
    vgg.classifier = nn.Sequential(nn.Linear(512, 2048), nn.Linear(2048, 10))
    minigrad.manual_seed(0)
    vgg.reset_parameters()
    w = vgg.layer("conv3_1").weight.data  # (256, 128, 3, 3): kaiming normal, fan_out = 256 * 9
    assert abs(w.std() - np.sqrt(2 / (256 * 9))) < 0.02 * np.sqrt(2 / (256 * 9))
    assert abs(w.mean()) < 0.01 * w.std()
    assert not vgg.layer("conv3_1").bias.data.any()
    fc = vgg.classifier[0]
    assert abs(fc.weight.data.std() - 0.01) < 2e-4 and not fc.bias.data.any()
    bn = vgg.layer("bn2_1")
    assert (bn.weight.data == 1).all() and not bn.bias.data.any()
    assert (bn.running_var == 1).all() and not bn.running_mean.any()
    first = w.copy()
    minigrad.manual_seed(0)
    vgg.reset_parameters()
    np.testing.assert_array_equal(vgg.layer("conv3_1").weight.data, first)
    # AlexNet keeps PyTorch's layer defaults: U(+-1/sqrt(fan_in)) for weights and biases;
    # constructors initialize (and start in training mode, as PyTorch's do)
    minigrad.manual_seed(1)
    a = models.alexnet()
    assert a.training and a.labels == imagenet_labels()
    b1 = 1 / np.sqrt(3 * 11 * 11)
    w = a.layer("conv1").weight.data
    assert w.min() >= -b1 and w.max() <= b1 and abs(w.std() - b1 / np.sqrt(3)) < 0.05 * b1
    assert np.abs(a.layer("fc8").bias.data).max() <= 1 / 64 and a.layer("fc8").bias.data.any()


# ---------------------------------------------------------------------------------------------
# Preprocessing and labels


def test_preprocess_numbers_and_round_trip():
    rng = np.random.default_rng(0)
    img = rng.integers(0, 256, (20, 30, 3), dtype=np.uint8)
    model = models.ConvNet("alexnet", init=None)
    x = model.preprocess(img, size=(20, 30))
    assert x.shape == (1, 3, 20, 30) and x.dtype == np.float32
    mean, std = np.array([0.485, 0.456, 0.406]), np.array([0.229, 0.224, 0.225])
    want = ((img / 255.0 - mean) / std).transpose(2, 0, 1)
    np.testing.assert_allclose(x[0], want, rtol=1e-5, atol=1e-5)
    np.testing.assert_array_equal(model.deprocess(x)[0], img)
    np.testing.assert_array_equal(model.deprocess(minigrad.tensor(x[0])), img)
    batch = model.preprocess([img, img[::-1]], size=(20, 30))
    assert batch.shape == (2, 3, 20, 30)
    np.testing.assert_array_equal(model.preprocess(np.stack([img, img]), size=(20, 30)), batch[[0, 0]])
    gray = model.preprocess(img[:, :, 0], size=(20, 30))
    assert np.allclose(gray[0, 0] * std[0] + mean[0], gray[0, 1] * std[1] + mean[1], atol=1e-5)
    np.testing.assert_allclose(model.preprocess(img / 255.0, size=(20, 30)), x, atol=1e-5)
    sixteen = img.astype(np.uint16) * 257  # 16-bit images are scaled to 8 bits, not clipped to white
    np.testing.assert_array_equal(model.preprocess(sixteen, size=(20, 30)), x)
    with pytest.warns(models.PreprocessingNote, match="30x20 resized to 384x256 and centre-cropped to 224x224"):
        assert model.preprocess(img).shape == (1, 3, 224, 224)


def test_preprocess_refusals():
    model = models.ConvNet("alexnet", init=None)
    with pytest.raises(ValueError, match="different sizes"):
        models.Preprocessing()([np.zeros((4, 4, 3), np.uint8), np.zeros((5, 4, 3), np.uint8)])
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        model.preprocess(np.full((4, 4, 3), 200.0))
    with pytest.raises(ValueError, match="uint8"):
        model.preprocess(np.full((4, 4, 3), 300, np.int32))
    with pytest.raises(ValueError, match="size must be from 1 to 8192"):
        model.preprocess(np.zeros((4, 4, 3), np.uint8), size=0)
    with pytest.raises(ValueError, match="crop must be"):
        model.preprocess(np.zeros((4, 4, 3), np.uint8), crop="middle")
    with pytest.raises(ValueError, match="shape"):
        model.preprocess(np.zeros((2, 4, 4, 5), np.uint8))
    with pytest.raises(FileNotFoundError, match="no such image"):
        model.preprocess("/nonexistent/cat.jpg")


def test_preprocess_paths_pil_and_center_crop(tmp_path):
    Image = pytest.importorskip("PIL.Image")
    rng = np.random.default_rng(1)
    img = rng.integers(0, 256, (300, 400, 3), dtype=np.uint8)
    Image.fromarray(img).save(tmp_path / "a.png")
    model = models.ConvNet("alexnet", init=None)
    x = model.preprocess(tmp_path / "a.png", size=(300, 400))
    np.testing.assert_array_equal(model.deprocess(x)[0], img)
    np.testing.assert_array_equal(model.preprocess(Image.fromarray(img), size=(300, 400)), x)
    with pytest.warns(models.PreprocessingNote, match="400x300 resized to 341x256 and centre-cropped to 224x224"):
        c = model.preprocess([str(tmp_path / "a.png"), img])
    assert c.shape == (2, 3, 224, 224)
    # shorter side 300 -> 256, longer 400 -> 341; crop the centre 224 x 224
    ref = np.asarray(Image.fromarray(img).resize((341, 256), Image.BILINEAR).crop((58, 16, 282, 240)))
    np.testing.assert_array_equal(model.deprocess(c[0]), ref)
    np.testing.assert_array_equal(c[0], c[1])
    (tmp_path / "bad.jpg").write_bytes(b"not an image")
    with pytest.raises(ValueError, match="cannot read the image"):
        model.preprocess(tmp_path / "bad.jpg")


def test_caffe_style_preprocessing_round_trip():
    caffe = models.Preprocessing("BGR", (0, 255), mean=(103.939, 116.779, 123.68), std=(1, 1, 1))
    img = np.random.default_rng(2).integers(0, 256, (5, 6, 3), dtype=np.uint8)
    x = caffe(img)
    np.testing.assert_allclose(x[0, 0], img[:, :, 2] - 103.939, atol=1e-4)  # channel 0 is blue
    np.testing.assert_array_equal(caffe.inverse(x)[0], img)
    assert models.Preprocessing.from_json(__import__("json").dumps(caffe.to_dict())) == caffe


def test_labels_and_decode():
    labels = imagenet_labels()
    assert len(labels) == 1000 and len(set(labels)) == 1000
    assert labels[0] == "tench" and labels[207] == "golden retriever" and labels[999] == "toilet tissue"
    assert labels[134] == "crane bird" and labels[517] == "crane"
    model = models.ConvNet("alexnet", init=None, labels=labels)
    logits = np.zeros((1, 1000))
    logits[0, 281] = 5
    top = model.decode(logits, k=2)[0]
    assert top[0][:2] == (281, "tabby") and top[0][2] > 0.1 and top[1][2] < top[0][2]


def test_load_makes_random_init_models_by_name():
    model = models.load("alexnet-random")
    assert model.arch == "alexnet" and not model.training
    assert not any(p.requires_grad for p in model.parameters())
    assert "vgg16-random" in models.available() and models.available()[0] == "fashion-vgg"


def test_weights_argument_errors(tmp_path, monkeypatch):
    monkeypatch.setenv("MINIGRAD_HOME", str(tmp_path))
    with pytest.raises(CheckpointError, match="python -m weights fetch vgg16"):
        models.vgg16(weights="vgg16")
    with pytest.raises(ValueError, match="holds vgg19 weights, not vgg16"):
        models.vgg16(weights="vgg19")
    with pytest.raises(CheckpointError, match="no such file"):
        models.vgg16(weights=tmp_path / "missing.safetensors")
    with pytest.raises(CheckpointError, match="no such file and not a model name; models available here: fashion-vgg, "
                                              "alexnet-random, .*vgg16-random"):
        models.load("vgg21")
    from weights import save_file

    save_file({"x": np.zeros(2, np.float32)}, tmp_path / "w.safetensors", {"arch": "vgg11"})
    with pytest.raises(ValueError, match="holds vgg11 weights, not vgg16"):
        models.vgg16(weights=tmp_path / "w.safetensors")
    with pytest.raises(CheckpointError, match="do not fit vgg11"):
        models.load(tmp_path / "w.safetensors")


def test_models_work_without_optional_packages():
    """With Pillow, torch and matplotlib blocked: import, build, preprocess arrays; reading an
    image file asks for Pillow by name; nothing optional (nor the network stack) is imported."""
    code = textwrap.dedent("""
        import importlib.abc, sys
        BLOCKED = ("PIL", "torch", "matplotlib")
        class Block(importlib.abc.MetaPathFinder):
            def find_spec(self, name, path=None, target=None):
                if name.split(".")[0] in BLOCKED:
                    raise ImportError(f"No module named {name!r} (blocked)", name=name)
        sys.meta_path.insert(0, Block())
        import numpy as np
        from minigrad import models
        m = models.ConvNet("alexnet", init=None)
        assert m.preprocess(np.zeros((4, 4, 3), np.uint8), size=4).shape == (1, 3, 4, 4)
        try:
            m.preprocess("cat.png")
        except ImportError as e:
            assert "pip install pillow" in str(e), e
        else:
            raise AssertionError("no ImportError")
        bad = [k for k in sys.modules if k.split(".")[0] in BLOCKED or k == "urllib.request"]
        assert not bad, bad
        print("ok")
    """)
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT,
                       env=dict(os.environ, PYTHONPATH=str(ROOT)), timeout=120)
    assert r.returncode == 0 and r.stdout.strip() == "ok", r.stdout + r.stderr


# ---------------------------------------------------------------------------------------------
# torch as the oracle: torch-saved torchvision-layout models, converted without torch


def _torch_vgg16(torch):
    tnn = torch.nn
    cfg = [64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M", 512, 512, 512, "M"]
    layers, c = [], 3
    for v in cfg:
        if v == "M":
            layers.append(tnn.MaxPool2d(2, 2))
        else:
            layers += [tnn.Conv2d(c, v, 3, padding=1), tnn.ReLU(inplace=True)]
            c = v
    return _torch_net(torch, layers, 7, [
        tnn.Linear(512 * 49, 4096), tnn.ReLU(True), tnn.Dropout(), tnn.Linear(4096, 4096), tnn.ReLU(True),
        tnn.Dropout(), tnn.Linear(4096, 1000)])


def _torch_alexnet(torch):
    tnn = torch.nn
    features = [
        tnn.Conv2d(3, 64, 11, 4, 2), tnn.ReLU(True), tnn.MaxPool2d(3, 2),
        tnn.Conv2d(64, 192, 5, padding=2), tnn.ReLU(True), tnn.MaxPool2d(3, 2),
        tnn.Conv2d(192, 384, 3, padding=1), tnn.ReLU(True), tnn.Conv2d(384, 256, 3, padding=1), tnn.ReLU(True),
        tnn.Conv2d(256, 256, 3, padding=1), tnn.ReLU(True), tnn.MaxPool2d(3, 2)]
    return _torch_net(torch, features, 6, [
        tnn.Dropout(), tnn.Linear(256 * 36, 4096), tnn.ReLU(True), tnn.Dropout(), tnn.Linear(4096, 4096),
        tnn.ReLU(True), tnn.Linear(4096, 1000)])


def _torch_net(torch, features, pool, classifier):
    class Net(torch.nn.Module):  # torchvision's attribute names: features, avgpool, classifier
        def __init__(self):
            super().__init__()
            self.features = torch.nn.Sequential(*features)
            self.avgpool = torch.nn.AdaptiveAvgPool2d((pool, pool))
            self.classifier = torch.nn.Sequential(*classifier)

        def forward(self, x):
            return self.classifier(torch.flatten(self.avgpool(self.features(x)), 1))

    return Net().eval()


def _convert(src, out, arch):
    """``python -m weights convert SRC --arch ARCH -o OUT`` (its main(), in this process; the
    subprocess layer is covered by test_cli.py)."""
    from weights.__main__ import main

    assert main(["convert", str(src), "--arch", arch, "-o", str(out)]) == 0


def _rel_err(got, want):
    return float(np.abs(got - want).max() / np.abs(want).max())


@pytest.fixture(scope="module")
def torch_vgg16(tmp_path_factory):
    torch = pytest.importorskip("torch")
    torch.manual_seed(0)
    folder = tmp_path_factory.mktemp("vgg16")
    net = _torch_vgg16(torch)
    files = {}
    for fmt, zipped in (("zip", True), ("legacy", False)):
        src = folder / f"vgg16-{fmt}.pth"
        torch.save(net.state_dict(), src, _use_new_zipfile_serialization=zipped)
        files[fmt] = folder / f"vgg16-{fmt}.safetensors"
        _convert(src, files[fmt], "vgg16")
        src.unlink()  # keep the disk use to one .pth at a time
    return torch, net, files


def test_converted_vgg16_matches_torch_in_both_formats(torch_vgg16):
    torch, net, files = torch_vgg16
    # the two formats convert to identical tensors and metadata (but the source name and hash) ...
    (zip_t, zip_meta), (leg_t, leg_meta) = load_file(files["zip"]), load_file(files["legacy"])
    assert list(zip_t) == list(leg_t) and all(np.array_equal(zip_t[k], leg_t[k]) for k in zip_t)
    assert zip_meta["arch"] == leg_meta["arch"] == "vgg16"
    assert (zip_meta["source_format"], leg_meta["source_format"]) == ("zip", "legacy")
    # ... which give torch's logits and activations (32 x 32 is the smallest input VGG takes)
    x = np.random.default_rng(0).standard_normal((2, 3, 32, 32)).astype(np.float32)
    seen = {}
    hooks = [net.features[20].register_forward_hook(lambda m, i, o: seen.__setitem__("relu4_2", o.clone())),
             net.classifier[3].register_forward_hook(lambda m, i, o: seen.__setitem__("fc7", o.clone()))]
    with torch.no_grad():
        want = net(torch.from_numpy(x)).numpy()
    for h in hooks:
        h.remove()
    model = models.vgg16(weights=files["legacy"]).eval()
    with minigrad.no_grad():
        got = model.extract(x, ["relu4_2", "fc7", "fc8"])
    assert got["fc8"].shape == (2, 1000)
    assert _rel_err(got["fc8"].numpy(), want) < 1e-4
    assert _rel_err(got["relu4_2"].numpy(), seen["relu4_2"].numpy()) < 1e-4
    assert _rel_err(got["fc7"].numpy(), seen["fc7"].numpy()) < 1e-4
    assert model.labels == imagenet_labels()
    assert model.preprocessing == models.TORCHVISION


@pytest.fixture(scope="module")
def torch_alexnet(tmp_path_factory):
    torch = pytest.importorskip("torch")
    torch.manual_seed(1)
    folder = tmp_path_factory.mktemp("alexnet")
    net = _torch_alexnet(torch)
    srcs = {}
    for fmt, zipped in (("zip", True), ("legacy", False)):
        srcs[fmt] = folder / f"alexnet-{fmt}.pth"
        torch.save(net.state_dict(), srcs[fmt], _use_new_zipfile_serialization=zipped)
    return torch, net, srcs, folder


def test_alexnet_from_both_formats_matches_torch(torch_alexnet):
    torch, net, srcs, folder = torch_alexnet
    x = np.random.default_rng(1).standard_normal((2, 3, 80, 72)).astype(np.float32)
    with torch.no_grad():
        want = net(torch.from_numpy(x)).numpy()
    out = folder / "alexnet.safetensors"
    _convert(srcs["zip"], out, "alexnet")
    converted = models.alexnet(weights=out).eval()
    direct = models.alexnet(weights=srcs["legacy"]).eval()  # a .pth read directly, no conversion
    for model in (converted, direct):
        with minigrad.no_grad():
            assert _rel_err(model(x).numpy(), want) < 1e-4
    # the converted model's weights view the file copy-on-write: writable, the file unchanged
    w = converted.layer("conv1").weight
    assert w.data.flags.writeable and not w.data.flags.owndata
    w.data[...] = 0
    assert load_file(out)[0]["features.0.weight"].any()


def test_gradient_reaches_the_image(torch_alexnet):
    torch, net, srcs, _ = torch_alexnet
    model = models.load(srcs["zip"])  # a .pth: arch guessed from its keys; eval mode, frozen
    assert model.arch == "alexnet" and not model.training
    assert not any(p.requires_grad for p in model.parameters())
    x = np.random.default_rng(2).standard_normal((1, 3, 64, 64)).astype(np.float32)
    xt = minigrad.tensor(x, requires_grad=True)
    model.extract(xt, ["conv5"])["conv5"].sum().backward()
    tx = torch.from_numpy(x).requires_grad_(True)
    net.features[:11](tx).sum().backward()
    assert _rel_err(xt.grad, tx.grad.numpy()) < 1e-4
    assert all(p.grad is None for p in model.parameters())


def test_fetch_end_to_end_from_a_local_mirror(torch_alexnet, tmp_path, monkeypatch, capsys):
    """fetch = download (here from a file:// mirror, no network) + verify + convert + cache."""
    torch, net, srcs, _ = torch_alexnet
    from weights.__main__ import main

    digest = registry.sha256_file(srcs["zip"])
    size = srcs["zip"].stat().st_size
    entry = registry.Checkpoint("alexnet", "alexnet", "alexnet-owt-7be5be79.pth", digest, size, "zip", True)
    monkeypatch.setitem(registry.CHECKPOINTS, "alexnet", entry)
    monkeypatch.setenv("MINIGRAD_HOME", str(tmp_path))
    assert main(["fetch", "alexnet", "--url", srcs["zip"].as_uri(), "-q"]) == 0
    assert (tmp_path / "weights" / "alexnet.safetensors").exists()
    assert main(["fetch", "alexnet"]) == 0 and "already converted" in capsys.readouterr().out
    model = models.load("alexnet")
    x = np.random.default_rng(3).standard_normal((1, 3, 64, 64)).astype(np.float32)
    with torch.no_grad():
        want = net(torch.from_numpy(x)).numpy()
    with minigrad.no_grad():
        assert _rel_err(model(x).numpy(), want) < 1e-4
    assert model.source == "alexnet-owt-7be5be79.pth"
