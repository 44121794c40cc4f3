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
                                "class-model", "visualize-unit", "inversion", "deepdream", "texture", "style-transfer",
                                "hog-inversion", "efros-leung", "fgsm", "pgd", "deepfool", "carlini-wagner", "lbfgs",
                                "adversarial", "fooling", "robustness", "bag-of-words", "bagnet-evidence", "embeddings",
                                "universal-approximation", "deep-image-prior", "dip-learning-curves",
                                "colorization"]
    for name, function in [("filters", methods.filters), ("activations", methods.activations),
                           ("patches", methods.maximally_activating_patches), ("neighbours", methods.neighbours),
                           ("tsne", methods.tsne_embedding), ("occlusion", methods.occlusion),
                           ("saliency", methods.saliency), ("deconvnet", methods.deconvnet),
                           ("guided-backprop", methods.guided_backprop), ("grad-cam", methods.grad_cam),
                           ("smoothgrad", methods.smoothgrad),
                           ("integrated-gradients", methods.integrated_gradients), ("class-model", methods.class_model),
                           ("visualize-unit", methods.visualize_unit), ("inversion", methods.invert),
                           ("deepdream", methods.deepdream), ("texture", methods.texture_synthesis),
                           ("style-transfer", methods.style_transfer),
                           ("hog-inversion", methods.hog_inversion), ("efros-leung", methods.efros_leung),
                           ("fgsm", methods.fgsm),
                           ("pgd", methods.pgd), ("deepfool", methods.deepfool),
                           ("carlini-wagner", methods.carlini_wagner), ("lbfgs", methods.lbfgs_attack),
                           ("adversarial", methods.adversarial_examples), ("fooling", methods.fooling_image),
                           ("robustness", methods.robustness),
                           ("bag-of-words", methods.bag_of_words), ("bagnet-evidence", methods.bagnet_evidence),
                           ("embeddings", methods.embeddings),
                           ("universal-approximation", methods.universal_approximation),
                           ("deep-image-prior", methods.deep_image_prior),
                           ("dip-learning-curves", methods.deep_image_prior_curves),
                           ("colorization", methods.colorization)]:
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


@pytest.mark.parametrize("name", list(TECHNIQUES))
def test_help_lists_every_option_with_its_default(name, capsys):
    with pytest.raises(SystemExit) as stop:
        build_parser().parse_args([name, "--help"])
    assert stop.value.code == 0
    text = " ".join(capsys.readouterr().out.split())
    for option in TECHNIQUES[name].options:
        assert option.flag in text
    assert text.count("(default: ") >= len(TECHNIQUES[name].options)


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
    assert signature(methods.class_model).parameters["l2_weight"].default == 1e-3  # cs231n's lambda
    assert signature(methods.class_model).parameters["blur_every"].default == 10
    assert signature(methods.visualize_unit).parameters["preset"].default == "blur"  # Yosinski et al.'s row 3
    assert signature(methods.invert).parameters["alpha"].default == 6.0  # Mahendran & Vedaldi
    assert signature(methods.invert).parameters["beta"].default == 2.0
    deepdream = signature(methods.deepdream).parameters
    assert (deepdream["octaves"].default, deepdream["octave_scale"].default, deepdream["steps"].default,
            deepdream["step_size"].default, deepdream["jitter"].default) == (4, 1.4, 10, 1.5, 32)
    assert signature(methods.texture_synthesis).parameters["pooling"].default == "avg"  # Gatys et al. 2015
    style = signature(methods.style_transfer).parameters  # neural-style's
    assert (style["content_weight"].default, style["style_weight"].default, style["tv_weight"].default,
            style["steps"].default, style["image_size"].default, style["optimizer"].default) == \
        (5.0, 100.0, 1e-3, 1000, 512, "lbfgs")


class Counting:
    """Counts forward passes of a model (a hook on its first layer)."""

    def __init__(self, model):
        self.model, self.calls = model, 0
        model.layers()[0][1].register_forward_hook(lambda *args: self.bump())

    def bump(self):
        self.calls += 1


def images(n=12):
    return np.random.default_rng(0).integers(0, 256, (n, 16, 16, 3), dtype=np.uint8)


#: What each kind of technique takes after the model, for calls that must fail before any work.
ARGS = {"images": (np.zeros((1, 3, 16, 16), np.float32),), "pictures": (np.zeros((16, 16, 3), np.uint8),),
        "dataset": (images(),), "model": ()}

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
    ("tsne", "method", "fast", "method must be one of auto, exact, barnes-hut, fft, got 'fast'"),
    ("filters", "max_filters", 0, "max_filters must be an integer >= 1 or None, got 0"),
    ("deep-image-prior", "task", "deblur", "task must be one of denoise, inpaint, jpeg, got 'deblur'"),
    ("deep-image-prior", "average", 1.0, "average must be a number from 0 to 0.9999, got 1.0"),
    ("deep-image-prior", "lr", 0, r"lr must be a number from 0 to 1 \(exclusive of the lower bound\), got 0"),
    ("dip-learning-curves", "scales", 9, "scales must be an integer from 1 to 8, got 9"),
    ("colorization", "patch", 4, "patch must be an integer from 8 to 256, got 4"),
    ("hog-inversion", "start", "", r"start must be an image: a file, sample:NAME, or an \(H, W\) or \(H, W, 3\) array"),
    ("hog-inversion", "start", [1, 2], "start must be an image"),
    ("hog-inversion", "sharpness", 0, "sharpness must be a number > 0 or None, got 0"),
    ("efros-leung", "size", [2], r"size must be an integer from 3 to 4096, got \[2\]"),
    ("fgsm", "eps", -0.1, "eps must be a number >= 0, got -0.1"),
    ("pgd", "norm", "l1", "norm must be one of linf, l2, got 'l1'"),
    ("carlini-wagner", "lr", 0, "lr must be a number > 0, got 0"),
    ("fooling", "threshold", 1.5, "threshold must be a number from 0 to 1 \\(exclusive of the lower bound\\), got 1.5"),
    ("robustness", "attacks", "", "attacks must be a string, got ''"),
    ("robustness", "attacks", "fgsm,cw", "attacks must be a comma-separated list of fgsm, pgd, noise, got 'fgsm,cw'"),
    ("class-model", "learning_rate", 0.0, "learning_rate must be a number > 0 or None, got 0.0"),
    ("class-model", "clip", "yes", "clip must be True or False, got 'yes'"),
    ("visualize-unit", "preset", "smooth", "preset must be one of norm, decay, blur, contribution, got 'smooth'"),
    ("visualize-unit", "norm_percentile", 101, "norm_percentile must be a number from 0 to 100 or None, got 101"),
    ("inversion", "layers", [], r"layers must be one or more layer names of the model or None, got \[\]"),
    ("inversion", "layers", ["conv1_1", 3], "layers must be one or more layer names of the model"),
    ("deepdream", "guide", 7, "guide must be one or more images: files, sample:NAME or uint8 arrays or None, got 7"),
    ("deepdream", "octaves", 0, "octaves must be an integer from 1 to 12, got 0"),
    ("style-transfer", "style_blend_weights", [1, -1], r"style_blend_weights must be a number >= 0 or None, "
                                                       r"got \[1, -1\]"),
    ("style-transfer", "style_blend_weights", ["a"], "style_blend_weights must be a number >= 0"),
    ("style-transfer", "optimizer", "sgd", "optimizer must be one of lbfgs, adam, got 'sgd'"),
    ("texture", "image_size", 8, "image_size must be an integer from 16 to 4096, got 8"),
]


def call(spec, model, **values):
    """Run a technique on a model and an input of the kind it takes (an image alone for
    inputs="image": those use no network; nothing for inputs="none")."""
    if spec.inputs == "image":
        return spec.function(np.zeros((8, 8), np.uint8), **values)
    if spec.inputs == "none":
        return spec.function(**values)
    return spec.function(model, *ARGS[spec.inputs], **values)


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
    assert set(KINDS) == {"int", "float", "bool", "choice", "str", "layer", "layers", "unit", "target", "ints",
                          "floats", "path", "image", "images"}
    before = dict(TECHNIQUES)
    with pytest.raises(TypeError, match=r"keyword-only parameters \['b', 'a'\] must be the declared options "
                                        r"\['a', 'b'\], in order"):
        @technique("mismatch", "t", "p", [Option("a", "int", 1, "h"), Option("b", "int", 1, "h")])
        def mismatch(model, x, *, b, a):
            pass
    with pytest.raises(ValueError, match="inputs must be one of 'images', 'pictures', 'dataset', 'model', 'image', "
                                         "'none'"):
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


# ----------------------------------------------------------------------------- a technique that takes nothing


@pytest.fixture
def registry(monkeypatch):
    """A scratch registry, so the toy techniques below leave the real one alone."""
    from methods.lib import options

    monkeypatch.setattr(options, "TECHNIQUES", {})
    return options


def test_a_technique_without_input_takes_options_only(registry):
    from methods.lib.result import Result

    from methods.lib.runner import run_technique

    @registry.technique("toy-none", "t", "p", [Option("k", "int", 2, "h")], inputs="none")
    def toy(*, k):
        return Result(k=k)

    assert toy(k=5).summary == {"k": 5} and toy().params == {"k": 2} and toy().technique == "toy-none"
    assert list(registry.TECHNIQUES) == ["toy-none"]
    result, notes = run_technique(registry.TECHNIQUES["toy-none"], None, {"k": 3})
    assert result.summary["k"] == 3 and notes == [] and result.inputs is None
    with pytest.raises(TypeError, match=r"toy-none\(\) takes no model or images, only options by name"):
        toy(tiny_vgg())
    with pytest.raises(ValueError, match="k must be an integer, got 'a'"):
        toy(k="a")
