"""One declaration of each technique's options (methods.lib.options): the function signature's
defaults, the checks (a bad value of every kind is a ValueError naming the option and its range,
before any work; an unknown option a TypeError), the command line made from it (the same values
refused with exit code 2 and no traceback), and the params a result records."""

import inspect
import os
import re
import subprocess
import sys

import numpy as np
import pytest

import methods
from methods.__main__ import build_parser, main
from methods.lib.options import KINDS, TECHNIQUES, Option, technique
from tests.methods.tiny_models import tiny_vgg

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def test_every_technique_is_registered_with_its_function():
    assert list(TECHNIQUES) == ["filters", "activations", "patches", "neighbours", "tsne", "occlusion", "saliency",
                                "deconvnet", "guided-backprop", "grad-cam", "smoothgrad", "integrated-gradients",
                                "hog-inversion", "efros-leung"]
    for name, function in [("filters", methods.filters), ("activations", methods.activations),
                           ("patches", methods.maximally_activating_patches), ("neighbours", methods.neighbours),
                           ("tsne", methods.tsne_embedding), ("occlusion", methods.occlusion),
                           ("saliency", methods.saliency), ("deconvnet", methods.deconvnet),
                           ("guided-backprop", methods.guided_backprop), ("grad-cam", methods.grad_cam),
                           ("smoothgrad", methods.smoothgrad),
                           ("integrated-gradients", methods.integrated_gradients),
                           ("hog-inversion", methods.hog_inversion), ("efros-leung", methods.efros_leung)]:
        assert TECHNIQUES[name].function is function and function.technique is TECHNIQUES[name]


@pytest.mark.parametrize("name", list(TECHNIQUES))
def test_signature_defaults_and_command_line_defaults_come_from_the_declaration(name):
    spec = TECHNIQUES[name]
    parameters = inspect.signature(spec.function).parameters.values()
    keyword = {p.name: p.default for p in parameters if p.kind is p.KEYWORD_ONLY}
    assert list(keyword) == [o.name for o in spec.options]  # keyword-only, in the declared order
    assert keyword == spec.defaults() == {o.name: o.default for o in spec.options}
    parsed = vars(build_parser().parse_args([name]))
    assert {o.name: parsed[o.name] for o in spec.options} == spec.defaults()
    assert set(spec.gallery_values()) == set(spec.defaults())


def test_documented_paper_defaults():
    signature = inspect.signature
    assert signature(methods.smoothgrad).parameters["samples"].default == 50  # Smilkov et al.'s n
    assert signature(methods.smoothgrad).parameters["noise"].default == 0.15
    assert TECHNIQUES["smoothgrad"].gallery_values()["samples"] == 16  # the gallery's lighter value
    assert signature(methods.integrated_gradients).parameters["steps"].default == 50
    assert signature(methods.saliency).parameters["foreground_quantile"].default == 0.95  # Simonyan et al. 3.1
    assert signature(methods.saliency).parameters["background_quantile"].default == 0.30
    assert signature(methods.tsne_embedding).parameters["perplexity"].default == 30.0
    assert signature(methods.maximally_activating_patches).parameters["k"].default == 9


class Counting:
    """Counts forward passes of a model (a hook on its first layer)."""

    def __init__(self, model):
        self.model, self.calls = model, 0
        model.layers()[0][1].register_forward_hook(lambda *args: self.bump())

    def bump(self):
        self.calls += 1


def images(n=12):
    return np.random.default_rng(0).integers(0, 256, (n, 16, 16, 3), dtype=np.uint8)


BAD = [  # technique, option, bad value, the message (the option named, with its range)
    ("occlusion", "size", 0, "size must be an integer >= 1 or None, got 0"),
    ("occlusion", "size", 2.5, "size must be an integer >= 1 or None, got 2.5"),
    ("occlusion", "size", True, "size must be an integer >= 1 or None, got True"),
    ("occlusion", "fill", "grey", "fill must be one of zeros, mean, blur, got 'grey'"),
    ("occlusion", "incremental", "no", "incremental must be True or False, got 'no'"),
    ("occlusion", "blur_sigma", float("nan"), "blur_sigma must be a number >= 0 or None, got nan"),
    ("occlusion", "target", -1, r"target must be a class index >= 0 or a class name \(or one per image\) or None"),
    ("occlusion", "target", [1, -2], "target must be a class index >= 0"),
    ("occlusion", "target", "", "target must be a class index >= 0"),
    ("saliency", "iterations", -1, "iterations must be an integer from 1 to 100, got -1"),
    ("saliency", "foreground_quantile", 1.01, "foreground_quantile must be a number from 0 to 1, got 1.01"),
    ("saliency", "segment", None, "segment must be True or False, got None"),
    ("activations", "upscale", 100000, "upscale must be an integer from 1 to 64 or None, got 100000"),
    ("activations", "channels", [0, -1], r"channels must be an integer >= 0 or None, got \[0, -1\]"),
    ("activations", "channels", [], r"channels must be an integer >= 0 or None, got \[\]"),
    ("activations", "layer", "", "layer must be a layer name of the model or None, got ''"),
    ("activations", "layer", 3, "layer must be a layer name of the model or None, got 3"),
    ("deconvnet", "unit", (1, 2), r"unit must be a channel c or a neuron \(c, i, j\) of non-negative integers"),
    ("deconvnet", "unit", -1, r"unit must be a channel c or a neuron \(c, i, j\)"),
    ("smoothgrad", "noise", -0.1, "noise must be a number from 0 to 10, got -0.1"),
    ("smoothgrad", "rule", "gradient", "rule must be one of standard, guided, deconvnet, got 'gradient'"),
    ("integrated-gradients", "steps", 0, "steps must be an integer from 1 to 10000, got 0"),
    ("grad-cam", "guided", 1, "guided must be True or False, got 1"),
    ("patches", "k", 0, "k must be an integer from 1 to 10000, got 0"),
    ("patches", "per_image", -1, "per_image must be an integer >= 0, got -1"),
    ("neighbours", "metric", "l1", "metric must be one of l2, cosine, got 'l1'"),
    ("neighbours", "queries", [-1], r"queries must be an integer >= 0 or None, got \[-1\]"),
    ("tsne", "learning_rate", 0, r"learning_rate must be a number > 0 or None, got 0"),
    ("tsne", "learning_rate", -1, r"learning_rate must be a number > 0 or None, got -1"),
    ("tsne", "perplexity", 0.5, "perplexity must be a number >= 1, got 0.5"),
    ("tsne", "theta", 1.5, "theta must be a number from 0 to 1, got 1.5"),
    ("tsne", "method", "fast", "method must be one of auto, exact, barnes-hut, got 'fast'"),
    ("filters", "max_filters", 0, "max_filters must be an integer >= 1 or None, got 0"),
    ("hog-inversion", "start", "", r"start must be an image: a file, sample:NAME, or an \(H, W\) or \(H, W, 3\) array"),
    ("hog-inversion", "start", [1, 2], "start must be an image"),
    ("hog-inversion", "sharpness", 0, "sharpness must be a number > 0 or None, got 0"),
    ("efros-leung", "size", [2], r"size must be an integer from 3 to 4096, got \[2\]"),
]


def call(spec, model, **values):
    """Run a technique on a model and an input of the kind it takes (an image alone for
    inputs="image": those use no network)."""
    if spec.inputs == "image":
        return spec.function(np.zeros((8, 8), np.uint8), **values)
    args = {"images": (np.zeros((1, 3, 16, 16), np.float32),), "dataset": (images(),), "model": ()}[spec.inputs]
    return spec.function(model, *args, **values)


@pytest.mark.parametrize("name, option, value, message", BAD)
def test_a_bad_value_is_named_with_its_range_before_any_work(name, option, value, message):
    spec = TECHNIQUES[name]
    counting = Counting(tiny_vgg())
    with pytest.raises(ValueError, match=message):
        call(spec, counting.model, **{option: value})
    assert counting.calls == 0


def test_the_bad_values_cover_every_kind_in_use():
    used = {o.kind for spec in TECHNIQUES.values() for o in spec.options}
    tested = {next(o.kind for o in TECHNIQUES[name].options if o.name == option) for name, option, _, _ in BAD}
    assert used <= tested, used - tested


@pytest.mark.parametrize("kind, bad, message", [
    ("str", "", "name must be a string, got ''"),
    ("str", 3, "name must be a string, got 3"),
    ("path", None, "name must be a file or folder path, got None"),
    ("float", float("inf"), "name must be a number >= 0, got inf"),
    ("int", 2.0, "name must be an integer >= 0, got 2.0"),
])
def test_option_kinds_no_technique_uses_yet(kind, bad, message):
    option = Option("name", kind, {"str": "a", "path": "a", "float": 1.0, "int": 1}[kind], "help", low=0)
    with pytest.raises(ValueError, match=message):
        option.check(bad)
    assert option.check(option.default) == option.default


def test_numbers_are_normalised_to_python_types():
    assert type(Option("n", "int", 1, "help").check(np.int64(3))) is int
    assert type(Option("x", "float", 1.0, "help").check(np.float32(0.5))) is float
    assert type(Option("x", "float", 1.0, "help").check(2)) is float
    assert Option("c", "ints", None, "help").check(np.array([1, 2])) == [1, 2]
    assert Option("u", "unit", None, "help").check([3]) == 3 and Option("u", "unit", None, "help").check([1, 2, 3]) \
        == (1, 2, 3)


def test_declarations_are_checked_when_made():
    with pytest.raises(ValueError, match="unknown option kind 'integer'"):
        Option("n", "integer", 1, "help")
    with pytest.raises(ValueError, match="n must be an integer >= 1, got 0"):
        Option("n", "int", 0, "help", low=1)  # a default outside its own range
    assert set(KINDS) == {"int", "float", "bool", "choice", "str", "layer", "unit", "target", "ints", "path", "image"}
    before = dict(TECHNIQUES)
    with pytest.raises(TypeError, match=r"keyword-only parameters \['b', 'a'\] must be the declared options "
                                        r"\['a', 'b'\], in order"):
        @technique("mismatch", "t", "p", [Option("a", "int", 1, "h"), Option("b", "int", 1, "h")])
        def mismatch(model, x, *, b, a):
            pass
    with pytest.raises(ValueError, match="inputs must be 'images', 'dataset', 'model' or 'image'"):
        technique("bad", "t", "p", [], inputs="video")
    with pytest.raises(TypeError, match="an inputs='image' technique takes one image parameter whose default names"):
        @technique("no-default", "t", "p", [], inputs="image")
        def no_default(image):
            pass
    assert TECHNIQUES == before


@pytest.mark.parametrize("name", list(TECHNIQUES))
def test_an_unknown_option_is_a_type_error_listing_the_options(name):
    spec = TECHNIQUES[name]
    known = ", ".join(o.name for o in spec.options)
    with pytest.raises(TypeError, match=f"{name}\\(\\) got unknown option\\(s\\) colour; its options are: {known}"):
        call(spec, tiny_vgg(), colour=1)


CLI_BAD = [
    (["occlusion", "--size", "0"], "argument --size: size must be an integer >= 1"),
    (["saliency", "--iterations", "-1"], "argument --iterations: iterations must be an integer from 1 to 100"),
    (["activations", "--upscale", "100000"], "argument --upscale: upscale must be an integer from 1 to 64"),
    (["tsne", "--learning-rate", "0"], "argument --learning-rate: learning_rate must be a number > 0"),
    (["tsne", "--learning-rate", "-1"], "argument --learning-rate: learning_rate must be a number > 0"),
    (["patches", "--k", "0"], "argument --k: k must be an integer from 1 to 10000"),
    (["occlusion", "--target", "-1"], "argument --target: target must be a class index >= 0"),
    (["occlusion", "--fill", "grey"], "argument --fill: fill must be one of zeros, mean, blur, got 'grey'"),
    (["occlusion", "--size", "two"], "argument --size: size must be an integer >= 1"),
    (["deconvnet", "--unit", "1,2"], r"argument --unit: unit must be a channel c or a neuron \(c, i, j\)"),
    (["neighbours", "--limit", "0"], "argument --limit: must be a positive integer"),
    (["occlusion", "--sise", "3"], "unrecognized arguments: --sise 3"),
]


@pytest.mark.parametrize("argv, message", CLI_BAD)
def test_the_command_line_refuses_the_same_values_before_any_work(tmp_path, capsys, argv, message):
    out = tmp_path / "out"
    with pytest.raises(SystemExit) as stop:
        main(argv + ["--out", str(out)])
    assert stop.value.code == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err
    assert re.search(message, err), err
    assert not out.exists()


@pytest.mark.parametrize("argv, message", [CLI_BAD[0], CLI_BAD[4]])
def test_python_m_methods_exits_2_without_a_traceback(tmp_path, argv, message):
    out = tmp_path / "out"
    result = subprocess.run([sys.executable, "-m", "methods", *argv, "--out", str(out)], capture_output=True,
                            text=True, cwd=ROOT, timeout=120, check=False)
    assert result.returncode == 2 and result.stdout == ""
    assert "Traceback" not in result.stderr and message in result.stderr
    assert not out.exists()


def test_params_are_the_values_used():
    model = tiny_vgg()
    x = np.random.default_rng(0).normal(size=(1, 3, 16, 16)).astype(np.float32)
    values = {"target": 2, "size": 5, "stride": 3, "fill": "blur", "batch_size": 7, "incremental": False,
              "blur_sigma": 1.5}
    assert methods.occlusion(model, x, **values).params == values
    result = methods.occlusion(model, x)  # defaults that depend on the image are recorded as used
    assert result.params == {**TECHNIQUES["occlusion"].defaults(), "size": 2, "stride": 1}
    assert methods.filters(model).params == {"layer": "conv1_1", "max_filters": 4, "max_channels": 16, "zoom": None}
    assert methods.activations(model, x, channels=[1, 2]).params == {"layer": "conv1_1", "scale": "layer",
                                                                      "channels": [1, 2], "upscale": None}
    assert methods.grad_cam(model, x, guided=False).params == {"target": None, "layer": "relu2_1", "guided": False}
    values = {"target": [1], "samples": 3, "noise": 0.2, "rule": "guided", "batch_size": 2, "seed": 4}
    assert methods.smoothgrad(model, x, **values).params == values
    assert methods.integrated_gradients(model, x, steps=4).params == {"target": None, "steps": 4,
                                                                     "baseline": "black", "batch_size": 16}
    assert methods.maximally_activating_patches(model, images(), k=2).params == {
        "layer": "pool2", "channel": 0, "k": 2, "per_image": 1, "batch_size": 64}
    assert methods.neighbours(model, images(), k=2).params == {
        "layer": "relu3", "metric": "l2", "k": 2, "queries": [0, 1, 2, 3, 4], "batch_size": 64,
        "precision": "float32"}  # batch_size: the one chosen for 512 MB of activations (at most 64)
    result = methods.tsne_embedding(model, images(), iterations=20, seed=3)
    assert result.params["layer"] == "relu3" and result.params["iterations"] == 20 and result.params["seed"] == 3
    assert result.params["perplexity"] == pytest.approx(11 / 3)  # lowered for 12 images: (N - 1) / 3
