"""Deep Image Prior (Ulyanov et al. 2018): the skip network against a torch twin with the same
weights (forward, gradients, Adam steps), the claims -- denoising rises at least 2 dB above the
noisy input before the fit to the noise overtakes it, and a natural image is fitted faster than
noise (Figure 2) -- the result's layout and range, inpainting's mask, backtracking, Ctrl-C, clear
errors, and the command line.

These tests train networks for hundreds of steps: they run on the compiled kernels when Numba is
there (several times faster than the NumPy reference here; the kernels have their own parity tests)."""

import json

import numpy as np
import pytest

import methods
import minigrad
from methods import data
from methods.__main__ import main
from methods.deep_image_prior import BACKTRACK_DB, SkipNet, _fit, psnr
from methods.lib.options import TECHNIQUES


pytestmark = pytest.mark.usefixtures("compiled_kernels")


TINY = dict(width=4, skip=2, scales=2, noise_channels=3, steps=3)


def photo(side=24):
    from methods.lib.images import resize

    return resize(data.sample_image("chelsea"), side)


# ----------------------------------------------------------------------------- the network


def test_size_for_gives_the_smallest_side_the_network_takes():
    net = SkipNet(width=2, skip=1, scales=3)
    assert [net.size_for(s) for s in (1, 16, 17, 24, 33, 64, 65)] == [16, 16, 24, 24, 40, 64, 72]


def test_skip_network_matches_a_torch_twin_forward_backward_and_adam():
    """Same weights, same z: the outputs, every weight's gradient and the outputs after three Adam
    steps agree with torch's (reflection padding, batch norm on batch statistics, LeakyReLU 0.2,
    bilinear x2 upsampling, concatenation, sigmoid)."""
    torch = pytest.importorskip("torch")
    minigrad.manual_seed(3)
    net = SkipNet(in_channels=5, out_channels=3, width=6, skip=2, scales=3)
    with minigrad.backend.using_backend("reference"):  # float64 on tiny arrays: the reference is quicker
        _compare_with_torch(torch, net)


def _compare_with_torch(torch, net):
    from benchmarks.dip import torch_skip_net

    twin = torch_skip_net(net).double()
    net = net.double()
    rng = np.random.default_rng(0)
    z = rng.random((1, 5, 24, 32)) * 0.1
    target = rng.random((1, 3, 24, 32))
    ours = minigrad.optim.Adam(list(net.parameters()), lr=0.01)
    theirs = torch.optim.Adam(twin.parameters(), lr=0.01)
    names = [name for name, _ in net.named_parameters()]
    assert names == [name for name, _ in twin.named_parameters()]
    for step in range(4):
        out = net(minigrad.tensor(z))
        expected = twin(torch.from_numpy(z))
        np.testing.assert_allclose(out.numpy(), expected.detach().numpy(), atol=1e-9, err_msg=f"step {step}")
        ours.zero_grad()
        theirs.zero_grad()
        ((out - minigrad.tensor(target)) * (out - minigrad.tensor(target))).mean().backward()
        ((expected - torch.from_numpy(target)) ** 2).mean().backward()
        for name, p, q in zip(names, net.parameters(), twin.parameters()):
            np.testing.assert_allclose(p.grad, q.grad.numpy(), rtol=1e-6, atol=1e-10, err_msg=f"{name}, step {step}")
        ours.step()
        theirs.step()


# ----------------------------------------------------------------------------- the claims


def test_denoising_rises_two_db_above_the_noisy_input():
    """The claim, fast: the gallery's run (the cat at 32 pixels, 16 channels, 3 scales, the paper's
    sigma = 25, input noise, averaging and learning rate): the averaged output's PSNR against the
    clean image climbs at least 2 dB above the noisy observation's."""
    spec = TECHNIQUES["deep-image-prior"]
    result = methods.deep_image_prior(data.sample_image("chelsea"), **spec.gallery_values())
    s = result.summary
    assert s["psnr_observed"] == pytest.approx(20.2, abs=0.3)  # sigma 25 on [0, 255]
    assert s["psnr_best"] >= s["psnr_observed"] + 2, s
    assert s["steps"] == 160 and s["backtracks"] == 0 and not s["interrupted"]
    assert result.image.shape == (21, 32, 3) and result.image.dtype == np.uint8  # resized by the gallery's size


@pytest.mark.slow
def test_the_fit_to_noise_overtakes_later():
    """The whole claim (about 20 s): PSNR against the clean image peaks at least 2 dB above the noisy
    input's, then falls by at least 2 dB while the fit to the noisy observation keeps rising -- at the
    end the output is closer to the noise than to the clean image."""
    result = methods.deep_image_prior(data.sample_image("chelsea"), corrupt=True, size=32, width=16, scales=3,
                                      steps=600)
    s, history = result.summary, result.summary["history"]
    best = s["best_step"] - 1
    assert s["psnr_best"] >= s["psnr_observed"] + 2, s
    assert 50 < best < 500
    assert history["psnr_average"][-1] <= s["psnr_best"] - 2
    fit = np.asarray(history["psnr_fit"])
    assert fit[-20:].mean() >= fit[best - 10:best + 10].mean() + 3
    assert fit[-20:].mean() > np.mean(history["psnr_output"][-20:])  # nearer the noise than the clean image


def test_natural_image_is_fitted_faster_than_noise():
    """Figure 2, fast (the gallery's run): the natural image's error is below white noise's and the
    shuffled pixels' at every step after the first few, and reaches 0.005 in fewer steps than any
    other target."""
    spec = TECHNIQUES["dip-learning-curves"]
    result = methods.deep_image_prior_curves(data.sample_image("chelsea"), **spec.gallery_values())
    mse = {name: np.asarray(values) for name, values in result.summary["mse"].items()}
    assert list(mse) == ["natural image", "image + noise", "shuffled pixels", "white noise"]
    assert all(len(v) == 60 for v in mse.values())
    for other in ("shuffled pixels", "white noise", "image + noise"):
        assert (mse["natural image"][5:] < mse[other][5:]).all(), other
    reached = result.steps_to(0.005)
    assert reached["natural image"] is not None
    assert all(step is None or step > reached["natural image"] for name, step in reached.items()
               if name != "natural image"), reached
    assert result.summary["final_mse"]["white noise"] > 5 * result.summary["final_mse"]["natural image"]


# ----------------------------------------------------------------------------- layout, range, mask


@pytest.mark.parametrize("make", [
    lambda: photo(),                                             # uint8 H x W x 3
    lambda: photo().astype(np.float32) / 255,                    # float32 in [0, 1]
    lambda: photo()[..., 0],                                     # grey H x W
    lambda: (photo()[:, :17].astype(np.float64) / 255),          # float64, an odd size
])
def test_the_result_has_the_inputs_layout_and_range(make):
    """uint8 comes back uint8; float in [0, 1] comes back float64 in [0, 1]; grey stays grey."""
    image = make()
    result = methods.deep_image_prior(image, **TINY)
    assert result.image.shape == image.shape
    assert result.image.dtype == (np.uint8 if image.dtype == np.uint8 else np.float64)
    if image.dtype == np.uint8:
        assert result.image.min() >= 0 and result.image.max() <= 255
    else:
        assert 0 <= result.image.min() and result.image.max() <= 1
    assert result.summary["psnr_observed"] is None  # the clean image is unknown
    assert len(result.summary["history"]["loss"]) == 3


def test_clean_gives_psnr_against_it_every_step():
    clean = photo()
    noisy = np.clip(clean + np.random.default_rng(0).normal(0, 20, clean.shape), 0, 255).astype(np.uint8)
    result = methods.deep_image_prior(noisy, clean=clean, **TINY)
    assert result.summary["psnr_observed"] == pytest.approx(psnr(noisy / 255, clean / 255))
    assert len(result.summary["history"]["psnr_average"]) == 3
    assert result.summary["psnr_restored"] == pytest.approx(result.summary["history"]["psnr_average"][-1])


def test_inpainting_ignores_the_unknown_pixels():
    """The loss sees only the known pixels: whatever the missing ones hold, the result is the same."""
    image = photo()
    mask = np.random.default_rng(1).random(image.shape[:2]) > 0.5
    a, b = image.copy(), image.copy()
    a[~mask], b[~mask] = 0, 255
    ra = methods.deep_image_prior(a, task="inpaint", mask=mask, **TINY)
    rb = methods.deep_image_prior(b, task="inpaint", mask=mask, **TINY)
    np.testing.assert_array_equal(ra.image, rb.image)
    assert ra.summary["history"]["loss"] == rb.summary["history"]["loss"]
    rc = methods.deep_image_prior(a, task="denoise", **TINY)  # without the mask they count
    assert rc.summary["history"]["loss"] != ra.summary["history"]["loss"]


@pytest.mark.parametrize("task", ["denoise", "inpaint", "jpeg"])
def test_corrupt_makes_the_papers_test_cases(task):
    image = photo()
    result = methods.deep_image_prior(image, task=task, corrupt=True, **TINY)
    observed, clean = result.observed, result.clean
    np.testing.assert_allclose(clean, image.transpose(2, 0, 1) / 255, atol=1e-6)
    if task == "denoise":
        assert np.std(observed - clean) == pytest.approx(25 / 255, rel=0.2)
    elif task == "inpaint":
        assert result.mask.mean() == pytest.approx(0.5, abs=0.1)
        assert (observed[:, ~result.mask] == 0).all()
        np.testing.assert_allclose(observed[:, result.mask], clean[:, result.mask])
    else:
        assert 15 < result.summary["psnr_observed"] < 40  # JPEG at quality 10: blocky, not destroyed
    assert result.summary["psnr_observed"] == pytest.approx(psnr(observed, clean))


def test_corrupt_removes_the_pixels_outside_a_given_mask():
    image = photo()
    mask = np.zeros(image.shape[:2], bool)
    mask[:, :12] = True
    result = methods.deep_image_prior(image, task="inpaint", mask=mask, corrupt=True, **TINY)
    np.testing.assert_array_equal(result.mask, mask)
    assert (result.observed[:, :, 12:] == 0).all() and (result.observed[:, :, :12] > 0).any()


def test_same_seed_same_result_and_another_seed_another():
    a = methods.deep_image_prior(photo(), seed=1, **TINY)
    b = methods.deep_image_prior(photo(), seed=1, **TINY)
    c = methods.deep_image_prior(photo(), seed=2, **TINY)
    np.testing.assert_array_equal(a.image, b.image)
    assert a.summary["history"]["loss"] == b.summary["history"]["loss"] != c.summary["history"]["loss"]


# ----------------------------------------------------------------------------- backtracking, Ctrl-C


def test_backtracking_restores_the_weights_and_adams_state(monkeypatch):
    """A step that throws the weights far away makes the next fit more than 5 dB worse: the weights
    and Adam's moments go back to the last good step, and the fit continues from there."""
    minigrad.manual_seed(0)
    net = SkipNet(in_channels=3, out_channels=3, width=4, skip=2, scales=2)
    rng = np.random.default_rng(0)
    z = (rng.random((1, 3, 16, 16)) * 0.1).astype(np.float32)
    target = (photo(16)[:, :16] / 255).transpose(2, 0, 1).astype(np.float32)
    original = minigrad.optim.Adam.step
    calls = []

    def wild(self, closure=None):
        calls.append([p.data.copy() for p in self.param_groups[0]["params"]])
        original(self, closure)
        if len(calls) == 3:  # the third update goes wrong
            for p in self.param_groups[0]["params"]:
                p.data += 10 * np.random.default_rng(5).standard_normal(p.data.shape).astype(p.data.dtype)

    monkeypatch.setattr(minigrad.optim.Adam, "step", wild)
    record = _fit(net, z, target, 6, 0.01, 0.0, 0.0, True, rng)
    assert record.backtracks == 1 and record.steps == 6
    assert len(record.loss) == 5  # the bad step's evaluation is not kept
    # the fourth update started from the weights the third one started from
    for before_third, before_fourth in zip(calls[2], calls[3]):
        np.testing.assert_array_equal(before_third, before_fourth)
    assert all(b > a - BACKTRACK_DB for a, b in zip(record.fit, record.fit[1:]))


def test_ctrl_c_keeps_the_steps_made(ctrl_c_at_step):
    ctrl_c_at_step(4)
    result = methods.deep_image_prior(photo(), corrupt=True, **{**TINY, "steps": 10})
    s = result.summary
    assert s["steps"] == 3 and s["interrupted"]
    assert len(s["history"]["loss"]) == len(s["history"]["psnr_average"]) == 3
    assert result.image.shape == photo().shape
    assert result.figures()  # the partial result draws


def test_ctrl_c_during_the_curves_keeps_the_curves_finished(ctrl_c_at_step):
    ctrl_c_at_step(8)
    result = methods.deep_image_prior_curves(photo(), width=4, skip=2, scales=2, noise_channels=3, steps=5)
    assert list(result.fits) == ["natural image", "image + noise"] and result.summary["interrupted"]
    assert result.summary["steps"] == {"natural image": 5, "image + noise": 2}
    assert set(result.figures()) == {"curves", "fits"}


# ----------------------------------------------------------------------------- errors


@pytest.mark.parametrize("call, error, message", [
    (lambda: methods.deep_image_prior(np.zeros((8, 8, 2), np.uint8)), ValueError,
     r"image must be an \(H, W\) grey or \(H, W, 3\) colour image, got shape \(8, 8, 2\)"),
    (lambda: methods.deep_image_prior(np.full((8, 8, 3), 2.0)), ValueError,
     r"a float image must hold values in \[0, 1\], got \[2, 2\]"),
    (lambda: methods.deep_image_prior(np.full((8, 8, 3), np.nan)), ValueError, "image contains NaN"),
    (lambda: methods.deep_image_prior(np.zeros((8, 8, 3), np.int32)), ValueError, "got dtype int32"),
    (lambda: methods.deep_image_prior("sample:lena"), ValueError, "sample:lena: no such sample"),
    (lambda: methods.deep_image_prior(photo(), task="inpaint"), ValueError, "inpainting needs mask="),
    (lambda: methods.deep_image_prior(photo(), mask=np.ones((16, 24), bool)), ValueError,
     "mask= is for task='inpaint'"),
    (lambda: methods.deep_image_prior(photo(), task="inpaint", mask=np.ones((10, 10), bool)), ValueError,
     r"mask must have the image's height and width \(16, 24\)"),
    (lambda: methods.deep_image_prior(photo(), task="inpaint", mask=np.zeros((16, 24), bool)), ValueError,
     "mask has no known pixels"),
    (lambda: methods.deep_image_prior(photo(), task="inpaint", mask=np.full((16, 24), 0.5)), ValueError,
     "mask must be H x W of booleans"),
    (lambda: methods.deep_image_prior(photo(), clean=photo(), corrupt=True), ValueError, "give clean= or corrupt"),
    (lambda: methods.deep_image_prior(photo(), clean=photo()[:, :10]), ValueError,
     r"clean must have the image's shape \(16, 24, 3\), got \(16, 10, 3\)"),
    (lambda: methods.deep_image_prior(photo(), clean=photo()[..., 0]), ValueError, "clean must have the image's shape"),
    (lambda: methods.deep_image_prior(photo(), steps=0), ValueError, "steps must be an integer from 1"),
    (lambda: methods.deep_image_prior(photo(), colour=3), TypeError, "got unknown option"),
    (lambda: methods.deep_image_prior(photo(), photo()), TypeError, r"deep-image-prior\(\) takes one image"),
])
def test_bad_input_is_a_clear_error(call, error, message):
    with pytest.raises(error, match=message):
        call()


# ----------------------------------------------------------------------------- command line


def test_command_line_runs_on_a_shipped_photo_and_writes_valid_json(tmp_path, capsys):
    out = tmp_path / "dip"
    code = main(["deep-image-prior", "--image", "sample:astronaut", "--corrupt", "--size", "24", "--steps", "4",
                 "--width", "4", "--scales", "2", "--out", str(out)])
    printed, err = capsys.readouterr()
    assert code == 0, err
    names = sorted(p.name for p in out.iterdir())
    assert {"deep-image-prior.json", "deep-image-prior_restoration.png", "deep-image-prior_psnr.png",
            "deep-image-prior_restored.png", "deep-image-prior_restored_x11.png", "deep-image-prior_clean.png",
            "deep-image-prior_observed.png"} <= set(names)
    record = json.loads((out / "deep-image-prior.json").read_text(), parse_constant=pytest.fail)
    assert record["inputs"] == {"image": "sample:astronaut"} and record["params"]["steps"] == 4
    assert record["params"]["reg_noise"] == pytest.approx(1 / 30) and record["steps"] == 4
    assert 20 < record["psnr_observed"] < 22  # sigma 25, a little less noise where the clipping to 0..255 cuts it


def test_command_line_takes_no_model(tmp_path, capsys):
    with pytest.raises(SystemExit):
        main(["deep-image-prior", "--model", "fashion-vgg", "--out", str(tmp_path / "a")])
    assert "unrecognized arguments: --model" in capsys.readouterr().err


def test_inpainting_from_the_command_line_with_a_mask_file(tmp_path, capsys):
    from PIL import Image

    image = photo()
    known = np.random.default_rng(3).random(image.shape[:2]) > 0.3
    Image.fromarray(np.where(known[..., None], image, 0).astype(np.uint8)).save(tmp_path / "damaged.png")
    Image.fromarray((known * 255).astype(np.uint8)).save(tmp_path / "mask.png")
    Image.fromarray(image).save(tmp_path / "clean.png")
    code = main(["deep-image-prior", "--image", str(tmp_path / "damaged.png"), "--task", "inpaint", "--mask",
                 str(tmp_path / "mask.png"), "--clean", str(tmp_path / "clean.png"), "--steps", "3", "--width", "4",
                 "--scales", "2", "--out", str(tmp_path / "out")])
    assert code == 0, capsys.readouterr().err
    record = json.loads((tmp_path / "out" / "deep-image-prior.json").read_text())
    assert record["params"]["mask"] == str(tmp_path / "mask.png")
    assert record["psnr_observed"] == pytest.approx(psnr(np.where(known[..., None], image, 0) / 255, image / 255))
