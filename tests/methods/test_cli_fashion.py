"""Saliency, occlusion, deconvnet and guided backprop on fashion-vgg: the garment claim with the
shipped weights, every technique's command line (``python -m methods NAME``, run in-process)
with the files it writes, any image file as input, and clear errors on a small FashionVGG."""

import json
import os

import numpy as np
import pytest

import methods
from methods import data
from methods.__main__ import main
from minigrad.models import fashion_vgg as fashion


def trained_fashion_vgg():
    import weights

    path = os.path.join(os.path.dirname(os.path.abspath(weights.__file__)), fashion.WEIGHTS_NAME)
    if not os.path.exists(path):
        pytest.skip("the shipped fashion-vgg weights are not in weights/ yet")
    return fashion.fashion_vgg()


def dilate(masks):
    """Grow (N, H, W) boolean masks by one pixel in all 8 directions."""
    padded = np.pad(masks, ((0, 0), (1, 1), (1, 1)))
    h, w = masks.shape[1:]
    return np.any([padded[:, dy:dy + h, dx:dx + w] for dy in range(3) for dx in range(3)], axis=0)


def test_saliency_mass_lies_on_the_garment():
    """Fashion-MNIST garments sit on a black (0) background: most saliency lies on the garment
    (grown by one pixel, so its outline counts: a 3x3 filter sees an edge from both sides)."""
    model = trained_fashion_vgg()
    images, labels = data.fashion_sample()
    picks = np.concatenate([np.flatnonzero(labels == c)[:3] for c in range(10)])
    x = model.preprocess(images[picks])
    maps = methods.saliency(model, x, target=labels[picks].tolist(), segment=False).maps
    garment = dilate(images[picks] > 0)
    share = (maps * garment).sum(axis=(1, 2)) / maps.sum(axis=(1, 2))
    assert np.median(share) > 0.7, share
    # and more than the garment's share of the frame, for nearly every image
    assert np.mean(share > garment.mean(axis=(1, 2))) >= 0.9, share


def run_cli(capsys, argv):
    """``python -m methods ARGV`` in-process: (exit code, printed paths, stderr)."""
    code = main(argv)
    out, err = capsys.readouterr()
    return code, [line for line in out.splitlines() if line], err


@pytest.mark.parametrize("technique, options, expected", [
    ("saliency", [], ["saliency_0.png", "saliency_0_map.png", "saliency_0_map_x10.png", "saliency_0_mask.png",
                      "saliency_0_mask_x10.png"]),
    ("occlusion", ["--size", "7", "--stride", "7"], ["occlusion_0.png", "occlusion_0_probability.png",
                                                     "occlusion_0_probability_x64.png"]),
    ("deconvnet", ["--layer", "conv2_1", "--unit", "1,3,3"], ["deconvnet_0.png", "deconvnet_0_map.png",
                                                              "deconvnet_0_map_x10.png"]),
    ("guided-backprop", ["--target", "3"], ["guided-backprop_0.png", "guided-backprop_0_map.png",
                                            "guided-backprop_0_map_x10.png"]),
])
def test_cli_runs_and_saves(tmp_path, capsys, technique, options, expected):
    trained_fashion_vgg()
    out = tmp_path / technique
    code, paths, err = run_cli(capsys, [technique, "--model", "fashion-vgg", "--image", "sample:0", "--out", str(out)]
                               + options)
    assert code == 0, err
    assert sorted(os.listdir(out)) == sorted(expected + [f"{technique}.json"])
    assert sorted(os.path.basename(p) for p in paths) == sorted(os.listdir(out))
    record = json.loads((out / f"{technique}.json").read_text())
    assert record["technique"] == technique and record["inputs"] == {"images": ["sample:0"]}
    spec = methods.TECHNIQUES[technique]
    assert set(record["params"]) >= {o.name for o in spec.options}
    if technique == "occlusion":
        assert record["params"]["size"] == 7 and record["params"]["stride"] == 7
    if technique == "guided-backprop":
        assert record["targets"] == [3] and record["params"]["target"] == 3
    if technique == "deconvnet":
        assert record["params"]["layer"] == "conv2_1" and record["params"]["unit"] == [1, 3, 3]


def test_any_image_file_runs_on_fashion_vgg(tmp_path, capsys):
    """A colour PNG of the model's size and a larger one: made grey, the larger one resized with a note."""
    Image = pytest.importorskip("PIL.Image")
    trained_fashion_vgg()
    rng = np.random.default_rng(0)
    small, large = tmp_path / "small.png", tmp_path / "large.png"
    Image.fromarray(rng.integers(0, 256, (28, 28, 3), dtype=np.uint8)).save(small)
    Image.fromarray(rng.integers(0, 256, (60, 100, 3), dtype=np.uint8)).save(large)
    code, _, err = run_cli(capsys, ["saliency", "--image", str(small), "--out", str(tmp_path / "a"), "--no-segment"])
    assert code == 0, err
    assert "note:" not in err
    code, _, err = run_cli(capsys, ["grad-cam", "--image", str(small), "--image", str(large),
                                    "--out", str(tmp_path / "b")])
    assert code == 0, err
    assert f"note: {large}: 100x60 resized to 46x28 and centre-cropped to 28x28" in err
    record = json.loads((tmp_path / "b" / "grad-cam.json").read_text())
    assert record["inputs"] == {"images": [str(small), str(large)]} and len(record["targets"]) == 2


def test_bad_image_on_the_command_line_is_one_line(tmp_path, capsys):
    code, paths, err = run_cli(capsys, ["saliency", "--image", str(tmp_path / "missing.png"),
                                        "--out", str(tmp_path / "out")])
    assert code == 2 and paths == []
    assert err.startswith("error: ") and "missing.png: no such image file" in err and "Traceback" not in err
    code, paths, err = run_cli(capsys, ["saliency", "--image", "sample:2000", "--out", str(tmp_path / "out2")])
    assert code == 2 and "the Fashion-MNIST sample has images 0..1999" in err
    code, paths, err = run_cli(capsys, ["saliency", "--image", "sample:lena", "--out", str(tmp_path / "out3")])
    assert code == 2 and "sample:lena: no such sample" in err


@pytest.fixture(scope="module")
def small_model():
    return fashion.FashionVGG(blocks=((4,), (4,), (6,)), hidden=8).eval()


def test_small_fashion_vgg_errors_are_named(small_model):
    x = small_model.preprocess(data.fashion_sample()[0][:1])
    assert x.shape == (1, 1, 28, 28)
    with pytest.raises(ValueError, match="unknown layer 'conv9_1' for fashion-vgg; its layers are: conv1_1"):
        methods.guided_backprop(small_model, x, layer="conv9_1", unit=0)
    with pytest.raises(ValueError, match="takes 1-channel images, got 3"):
        methods.saliency(small_model, np.zeros((1, 3, 28, 28), np.float32))
    with pytest.raises(ValueError, match="takes 28x28 images, got 32x32"):
        methods.occlusion(small_model, np.zeros((1, 1, 32, 32), np.float32))
    with pytest.raises(ValueError, match="unknown class name 'cat'; the classes are: T-shirt/top, Trouser"):
        methods.saliency(small_model, x, target="cat")
    result = methods.saliency(small_model, x, target="sneaker", segment=False)  # names, any case
    assert list(result.targets) == [7]
    assert result.titles[0].startswith("Sneaker (7), p = ")
