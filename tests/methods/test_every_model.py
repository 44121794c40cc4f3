"""Every registered technique on every kind of model (issue 11): the shipped fashion-vgg (there
also the techniques that work on an image alone, with no network), a plain
``nn.Sequential`` built here, a functional-style ``nn.Module`` (occlusion falls back to full
recomputation), and vgg16-random / alexnet-random (every technique: marked slow, about two minutes
on two cores; one technique each on a 64 x 64 input: always). Each result draws non-constant uint8
figures and writes valid JSON."""

import json
import warnings

import numpy as np
import pytest

import minigrad
from methods import data
from methods.lib.options import TECHNIQUES
from methods.lib.output import prepare_folder, write_json
from methods.lib.runner import run_technique
from minigrad import functional as F
from minigrad import models, nn

#: Images per dataset technique: enough for the maps, not the whole 2,000-image sample.
LIMIT = {"fashion-vgg": 48, "vgg16-random": 24, "alexnet-random": 24}


def reject_constant(name):
    raise ValueError(f"{name} in the JSON")


def check_outputs(result, folder):
    """Figures are non-constant uint8 RGB images; pictures uint8, not all blank; the JSON ``save``
    writes is valid (no NaN). (Drawing the figures is most of the time, so they are drawn once and not saved.)"""
    figures = result.figures()
    assert figures, result.technique
    for name, image in figures.items():
        assert image.dtype == np.uint8 and image.ndim == 3 and image.shape[2] == 3, name
        assert image.min() < image.max(), f"{result.technique} figure {name} is constant"
    pictures = result.pictures()
    for name, image in pictures.items():
        assert image.dtype == np.uint8 and image.ndim in (2, 3), name
    if pictures:  # a figure is never blank (titles, axes); the raw maps show whether there was anything to draw
        assert any(image.min() < image.max() for image in pictures.values()), f"{result.technique}: blank maps"
    path = write_json(prepare_folder(folder), f"{result.technique}.json", result.record())
    with open(path, encoding="utf-8") as handle:
        record = json.loads(handle.read(), parse_constant=reject_constant)
    assert record["technique"] == result.technique
    assert set(record["params"]) >= {o.name for o in TECHNIQUES[result.technique].options}
    return record


# ----------------------------------------------------------------------------- fashion-vgg


@pytest.fixture(scope="module")
def fashion():
    return models.load("fashion-vgg")


@pytest.mark.parametrize("name", list(TECHNIQUES))
def test_every_technique_on_fashion_vgg(fashion, tmp_path, name):
    spec = TECHNIQUES[name]
    minigrad.manual_seed(0)
    result, notes = run_technique(spec, fashion, spec.gallery_values(), limit=LIMIT["fashion-vgg"])
    assert notes == []
    record = check_outputs(result, tmp_path / name)
    if spec.inputs == "images":
        assert record["inputs"] == {"images": ["sample:0"]}
    if spec.inputs == "dataset":
        assert record["inputs"]["images"] == LIMIT["fashion-vgg"]
    if spec.inputs == "image":  # no network: its own default image
        assert record["inputs"] == {"image": spec.image}
    if name == "occlusion":
        assert result.summary["used_incremental"]


# ----------------------------------------------------------------------------- a user's own networks


def sequential():
    """conv-relu-pool-conv-relu-pool-flatten-linear for 3 x 16 x 16 input, random weights."""
    minigrad.manual_seed(0)
    return nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
                         nn.Conv2d(4, 8, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
                         nn.Flatten(), nn.Linear(8 * 4 * 4, 5)).eval()


class Functional(nn.Module):
    """The same kind of network written as torch users often do: modules for the weights,
    minigrad.functional for ReLU, pooling and flattening in forward."""

    def __init__(self):
        super().__init__()
        minigrad.manual_seed(1)
        self.conv1 = nn.Conv2d(3, 4, 3, padding=1)
        self.conv2 = nn.Conv2d(4, 8, 3, padding=1)
        self.fc = nn.Linear(8 * 4 * 4, 5)

    def forward(self, x):
        x = F.max_pool2d(F.relu(self.conv1(x)), 2)
        x = F.max_pool2d(F.relu(self.conv2(x)), 2)
        return self.fc(x.reshape(x.shape[0], -1))


NETWORKS = {"sequential": sequential, "functional": lambda: Functional().eval()}


#: The techniques that use a network (those with inputs="image" work on an image alone).
ON_NETWORKS = [name for name, spec in TECHNIQUES.items() if spec.inputs != "image"]


@pytest.mark.parametrize("name", ON_NETWORKS)
@pytest.mark.parametrize("network", list(NETWORKS))
def test_every_technique_on_a_users_network(tmp_path, network, name):
    """Image techniques take the raw network and a preprocessed-like float batch; dataset
    techniques take it adapted with its input shape (the photo crops at 16 x 16)."""
    spec = TECHNIQUES[name]
    net = NETWORKS[network]()
    values = spec.gallery_values()
    if spec.inputs == "images":
        x = np.random.default_rng(0).uniform(size=(1, 3, 16, 16)).astype(np.float32)
        result = spec.function(net, x, **values)
    elif spec.inputs == "model":
        result = spec.function(net, **values)
    else:
        result, _ = run_technique(spec, models.as_model(net, input_shape=(3, 16, 16)), values)
        assert result.inputs["images"] >= 60
    check_outputs(result, tmp_path / name)
    if name == "occlusion":  # a functional forward cannot run layer by layer: full recomputation
        assert result.summary["used_incremental"] == (network == "sequential")
    if network == "sequential" and result.params.get("layer") is not None:
        assert result.params["layer"].isdigit()  # an nn.Sequential's layers are named by index


# ----------------------------------------------------------------------------- VGG16 and AlexNet


@pytest.fixture(scope="module")
def convnets():
    """vgg16-random and alexnet-random, built once (VGG16's 138M weights take seconds)."""
    built = {}

    def get(name):
        if name not in built:
            minigrad.manual_seed(0)
            built[name] = models.load(name)
        return built[name]

    return get


@pytest.mark.parametrize("model_name, name", [("alexnet-random", "grad-cam"), ("vgg16-random", "saliency")])
def test_one_fast_representative_per_convnet(convnets, tmp_path, model_name, name):
    """Always run: the default image at 64 x 64 (preprocess's ``size=``), Grad-CAM (and Guided
    Grad-CAM) on AlexNet, saliency with GrabCut on VGG16; the full set below is slow."""
    model = convnets(model_name)
    with pytest.warns(models.PreprocessingNote, match="to 64x64"):
        x = model.preprocess(data.sample_image("chelsea"), size=64)
    spec = TECHNIQUES[name]
    result = spec.function(model, x, **spec.gallery_values())
    check_outputs(result, tmp_path / name)
    if name == "grad-cam":
        assert result.params["layer"] == "relu5" and result.maps.shape == (1, 3, 3)
        assert result.guided.shape == (1, 3, 64, 64)
    else:
        assert result.maps.shape == (1, 64, 64) and result.masks.shape == (1, 64, 64)


@pytest.mark.slow
@pytest.mark.parametrize("name", ON_NETWORKS)
@pytest.mark.parametrize("model_name", ["alexnet-random", "vgg16-random"])
def test_every_technique_on_vgg16_and_alexnet(convnets, tmp_path, model_name, name):
    """As ``python -m methods NAME --model MODEL`` runs it (the cat at 224 x 224, the photo crops),
    on the compiled kernels when Numba is there (the NumPy reference takes minutes on VGG16)."""
    spec = TECHNIQUES[name]
    model = convnets(model_name)
    backend = "numba" if _has_numba() else "reference"
    minigrad.manual_seed(0)
    with minigrad.backend.using_backend(backend), warnings.catch_warnings():
        warnings.simplefilter("ignore", models.PreprocessingNote)
        result, notes = run_technique(spec, model, spec.gallery_values(), limit=LIMIT[model_name])
    if spec.inputs == "images":
        assert notes == ["sample:chelsea: 451x300 resized to 384x256 and centre-cropped to 224x224, the model's input size"]
    check_outputs(result, tmp_path / name)


def _has_numba():
    try:
        import numba  # noqa: F401
    except ImportError:
        return False
    return True


@pytest.mark.slow
def test_a_converted_checkpoint_runs_from_the_command_line(tmp_path):
    """A weights file (what ``python -m weights convert`` writes) given to --model by its path."""
    from methods.__main__ import main
    from minigrad import models
    from weights import safetensors

    minigrad.manual_seed(0)
    path = tmp_path / "alexnet.safetensors"
    safetensors.save_file(models.alexnet().state_dict(), path, metadata={"arch": "alexnet"})
    out = tmp_path / "out"
    assert main(["grad-cam", "--model", str(path), "--image", "sample:coffee", "--out", str(out)]) == 0
    record = json.loads((out / "grad-cam.json").read_text())
    assert record["params"]["layer"] == "relu5" and record["inputs"]["images"] == ["sample:coffee"]
    assert len(record["explained"]) == 1 and 0 < record["probabilities"][0] <= 1
