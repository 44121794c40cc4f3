"""Self-supervision by colorization: a network learns to colour grey photographs, and a linear probe
measures what its features learned about the images.

The lecture notes' detour (Larsson, Maire & Shakhnarovich, "Learning Representations for Automatic
Colorization", ECCV 2016, and "Colorization as a Proxy Task for Visual Understanding", CVPR 2017):
a fully convolutional network takes the lightness L of a photograph and predicts its colour, the a
and b channels of CIE Lab. No labels are needed -- every photograph is its own target -- and to
colour well a network has to recognise what it sees (fur, skin, sky), so its features should serve
other tasks. Here the other task is to tell which of the shipped images a grey patch comes from, by
a linear classifier on the features pooled over the patch (the probe), against the same network
untrained (random features, the baseline the papers compare with).

The network follows Larsson et al. in small: blocks of two 3x3 convolutions (batch norm, ReLU),
2x2 max-pooling between blocks, and a hypercolumn -- every block's output upsampled bilinearly to
the input size and concatenated -- read by two per-pixel (1x1) convolutions. Where we differ:
they predict a histogram of colours per pixel (a KL loss) from a VGG-16 trained on ImageNet; we
regress the mean (a, b) with the squared error (simpler, and known to give washed-out colours where
several are plausible) from three blocks trained from scratch on the four shipped colour photos.

Data: each shipped image scaled by ``scale`` and cut into a checkerboard of ``cell`` x ``cell``
squares; patches from the white squares train the colorization and the probe's classifier, patches
from the black squares test the probe and the colorization, so no test patch shows a pixel any
training patch showed. The probe's features are each block's output averaged over the patch;
both networks' batch-norm statistics are those of the probe's training patches, so the two differ
only in their convolution weights (the same initialization, trained or not).
"""

import copy

import numpy as np

import minigrad
from methods import data
from methods.lib.figures import Panel, bars, curves, figure
from methods.lib.images import resize, to_uint8
from methods.lib.options import Option, technique
from methods.lib.result import Result
from methods.lib.training import LinearClassifier, run_steps
from minigrad import functional as F
from minigrad import nn

__all__ = ["ColorNet", "ColorizationResult", "colorization", "lab_to_rgb", "rgb_to_lab"]

#: sRGB (linear) to CIE XYZ, and the D65 white point (IEC 61966-2-1; as scikit-image's rgb2lab).
XYZ_FROM_RGB = np.array([[0.412453, 0.357580, 0.180423],
                         [0.212671, 0.715160, 0.072169],
                         [0.019334, 0.119193, 0.950227]])
WHITE = np.array([0.95047, 1.0, 1.08883])
#: Lightness L (0..100) enters the network as L / 50 - 1; colour a, b is predicted in units of 100.
AB_UNIT = 100.0
#: L2 penalty of the probe's classifier (on standardized features).
PROBE_DECAY = 1e-3


def rgb_to_lab(rgb):
    """CIE L*a*b* (D65) of sRGB values in [0, 1], shape (..., 3): L in 0..100, a and b about -128..127."""
    rgb = np.asarray(rgb, np.float64)
    linear = np.where(rgb > 0.04045, ((rgb + 0.055) / 1.055) ** 2.4, rgb / 12.92)
    t = (linear @ XYZ_FROM_RGB.T) / WHITE
    f = np.where(t > (6 / 29) ** 3, np.cbrt(t), t / (3 * (6 / 29) ** 2) + 4 / 29)
    return np.stack([116 * f[..., 1] - 16, 500 * (f[..., 0] - f[..., 1]), 200 * (f[..., 1] - f[..., 2])], axis=-1)


def lab_to_rgb(lab):
    """sRGB in [0, 1] (clipped: not every Lab colour is an sRGB colour) of CIE L*a*b* (D65), (..., 3)."""
    lab = np.asarray(lab, np.float64)
    fy = (lab[..., 0] + 16) / 116
    f = np.stack([fy + lab[..., 1] / 500, fy, fy - lab[..., 2] / 200], axis=-1)
    t = np.where(f > 6 / 29, f ** 3, 3 * (6 / 29) ** 2 * (f - 4 / 29)) * WHITE
    linear = np.clip(t @ np.linalg.inv(XYZ_FROM_RGB).T, 0, None)
    return np.clip(np.where(linear > 0.0031308, 1.055 * linear ** (1 / 2.4) - 0.055, 12.92 * linear), 0, 1)


def _block(in_channels, out_channels):
    return nn.Sequential(nn.Conv2d(in_channels, out_channels, 3, padding=1), nn.BatchNorm2d(out_channels), nn.ReLU(),
                         nn.Conv2d(out_channels, out_channels, 3, padding=1), nn.BatchNorm2d(out_channels), nn.ReLU())


class ColorNet(nn.Module):
    """Lightness (N, 1, H, W) -> colour (N, 2, H, W): three blocks of ``width``, 2 ``width`` and
    4 ``width`` channels at full, half and quarter size, read as a hypercolumn by two 1x1
    convolutions."""

    def __init__(self, width=16):
        super().__init__()
        self.blocks = nn.ModuleList([_block(1, width), _block(width, 2 * width), _block(2 * width, 4 * width)])
        self.hidden = nn.Conv2d(7 * width, 4 * width, 1)
        self.colour = nn.Conv2d(4 * width, 2, 1)

    def features(self, x):
        """Each block's output, full size first."""
        outputs = []
        for i, block in enumerate(self.blocks):
            x = block(F.max_pool2d(x, 2) if i else x)
            outputs.append(x)
        return outputs

    def forward(self, x):
        outputs = self.features(x)
        size = tuple(x.shape[2:])
        column = minigrad.concatenate([outputs[0]] + [F.interpolate(o, size=size, mode="bilinear")
                                                      for o in outputs[1:]], axis=1)
        return self.colour(F.relu(self.hidden(column)))


def _lightness(lab):
    return (lab[..., 0] / 50 - 1).astype(np.float32)


class Photo:
    """One shipped image at the working scale: ``name``, ``lab`` (H, W, 3), whether it has colour,
    and its checkerboard squares (top, left) for training and for testing."""

    def __init__(self, name, scale, cell):
        pixels = data.sample_image(name)
        self.colour = pixels.ndim == 3
        pixels = resize(pixels, round(max(pixels.shape[:2]) * scale))
        rgb = (pixels if self.colour else np.repeat(pixels[..., None], 3, axis=2)).astype(np.float64) / 255
        self.name, self.lab = name, rgb_to_lab(rgb)
        rows, cols = self.lab.shape[0] // cell, self.lab.shape[1] // cell
        squares = [(r, c) for r in range(rows) for c in range(cols)]
        self.cells = {split: [(r * cell, c * cell) for r, c in squares if (r + c) % 2 == parity]
                      for split, parity in (("train", 0), ("test", 1))}
        if not self.cells["test"]:
            raise ValueError(f"{name} at scale {scale} has fewer than two {cell} px squares: lower cell or raise scale")

    def patches(self, split, count, side, cell, rng):
        """``count`` random side x side Lab patches (count, side, side, 3), each inside one square of
        ``split``, half of them mirrored left to right."""
        cells = self.cells[split]
        out = np.empty((count, side, side, 3))
        for i in range(count):
            top, left = cells[rng.integers(len(cells))]
            top, left = top + rng.integers(cell - side + 1), left + rng.integers(cell - side + 1)
            patch = self.lab[top:top + side, left:left + side]
            out[i] = patch[:, ::-1] if rng.random() < 0.5 else patch
        return out


def _pooled(net, lab):
    """The probe's features of Lab patches: each block's output averaged over the patch, (N, 7 width)."""
    with minigrad.no_grad():
        outputs = net.features(minigrad.tensor(_lightness(lab)[:, None]))
    return np.concatenate([o.numpy().mean(axis=(2, 3)) for o in outputs], axis=1)


def _calibrated(net, lab):
    """A copy of ``net`` in evaluation mode whose batch norms' running statistics are those of
    ``lab``'s patches (one pass): its features do not depend on which patches share a batch."""
    net = copy.deepcopy(net)
    for module in net.modules():
        if isinstance(module, nn.BatchNorm2d):
            module.reset_running_stats()
            module.momentum = None  # a cumulative average: after one batch, that batch's statistics
    net.train()
    with minigrad.no_grad():
        net(minigrad.tensor(_lightness(lab)[:, None]))
    return net.eval()


def _colourize(net, lab):
    """RGB in [0, 1] of an image's lightness with the net's colour, (H, W, 3)."""
    with minigrad.no_grad():
        ab = net(minigrad.tensor(_lightness(lab)[None, None])).numpy()[0].transpose(1, 2, 0) * AB_UNIT
    return lab_to_rgb(np.concatenate([lab[..., :1], ab], axis=2))


@technique("colorization", "Self-supervision by colorization", "Larsson et al. 2016", [
    Option("steps", "int", 2000, "training steps (minibatches of random patches)", low=1, high=1_000_000,
           gallery=30),
    Option("batch_size", "int", 32, "patches per training step", low=1, high=4096, gallery=8),
    Option("patch", "int", 32, "side of the patches in pixels", low=8, high=256),
    Option("cell", "int", 48, "side of the checkerboard squares that split training from test patches", low=8,
           high=1024),
    Option("scale", "float", 0.5, "the shipped images are scaled by this first", low=0.05, high=1),
    Option("width", "int", 16, "channels of the first block (then 2x and 4x)", low=1, high=256, gallery=8),
    Option("lr", "float", 0.001, "Adam's learning rate", low=0, open_low=True, high=1),
    Option("probe_patches", "int", 60, "patches per image for the probe's training and again for its test",
           low=1, high=100_000, gallery=10),
    Option("seed", "int", 0, "seed of the initialization and of the patches", low=0),
], inputs="none")
def colorization(*, steps, batch_size, patch, cell, scale, width, lr, probe_patches, seed):
    """Train a :class:`ColorNet` to colour grey patches of the shipped colour photographs, then
    compare its features with the untrained network's on which image a grey patch comes from.
    Returns a :class:`ColorizationResult`."""
    if patch > cell:
        raise ValueError(f"patch ({patch}) must fit in a checkerboard square: at most cell ({cell})")
    photos = [Photo(name, scale, cell) for name in sorted(data.SAMPLE_IMAGES)]
    coloured = [p for p in photos if p.colour]
    rng = np.random.default_rng(seed)
    minigrad.manual_seed(seed)
    net = ColorNet(width)
    untrained = ColorNet(width)
    untrained.load_state_dict(net.state_dict())
    test = np.concatenate([p.patches("test", probe_patches, patch, cell, rng) for p in coloured])
    mean_ab = np.mean([p.lab[..., 1:].mean(axis=(0, 1)) for p in coloured], axis=0)
    optimizer = minigrad.optim.Adam(list(net.parameters()), lr=lr)
    losses = []

    def step(i):
        chosen = rng.integers(len(coloured), size=batch_size)
        lab = np.stack([coloured[k].patches("train", 1, patch, cell, rng)[0] for k in chosen])
        target = minigrad.tensor((lab[..., 1:] / AB_UNIT).transpose(0, 3, 1, 2).astype(np.float32))
        out = net(minigrad.tensor(_lightness(lab)[:, None]))
        loss = ((out - target) * (out - target)).mean()
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(float(loss.item()))
        return {"loss": losses[-1]}

    net.train()
    done = run_steps(step, steps, "colorization")
    net.eval()
    with minigrad.no_grad():
        predicted = net(minigrad.tensor(_lightness(test)[:, None])).numpy().transpose(0, 2, 3, 1) * AB_UNIT
    colour_error = float(np.sqrt(np.mean((predicted - test[..., 1:]) ** 2)))
    baseline_error = float(np.sqrt(np.mean((mean_ab - test[..., 1:]) ** 2)))
    colourized = {p.name: _colourize(net, p.lab) for p in coloured}

    split = {s: [p.patches(s, probe_patches, patch, cell, rng) for p in photos] for s in ("train", "test")}
    labels = {s: np.repeat(np.arange(len(photos)), probe_patches) for s in split}
    lab = {s: np.concatenate(split[s]) for s in split}
    probes = {}
    for name, network in (("colorization features", net), ("random features", untrained)):
        network = _calibrated(network, lab["train"])
        classifier = LinearClassifier(len(photos), PROBE_DECAY).fit(_pooled(network, lab["train"]), labels["train"])
        guess = classifier.predict(_pooled(network, lab["test"]))
        probes[name] = [float(np.mean(guess[labels["test"] == k] == k)) for k in range(len(photos))]
    return ColorizationResult(
        net, losses, colourized, {p.name: p.lab for p in coloured}, probes, [p.name for p in photos],
        steps=done, interrupted=done < steps, final_loss=losses[-1] if losses else None,
        colour_rmse=colour_error, baseline_colour_rmse=baseline_error,
        probe_accuracy={name: float(np.mean(acc)) for name, acc in probes.items()},
        probe_accuracy_per_image=probes, chance=1 / len(photos), images=[p.name for p in photos])


class ColorizationResult(Result):
    """``net`` the trained :class:`ColorNet`; ``losses`` per step (squared error of a, b in units
    of 100); ``colourized`` and ``originals`` ({photo: RGB (H, W, 3) in [0, 1]}, {photo: Lab});
    ``probes`` ({features: accuracy per image}) and ``names`` the images. ``summary``: steps, the
    colour error (RMS over a and b) on the test patches against predicting the mean colour, the
    probe's accuracy with each kind of features and the chance level."""

    technique = "colorization"

    def __init__(self, net, losses, colourized, originals, probes, names, **summary):
        super().__init__(**summary)
        self.net, self.losses, self.colourized, self.originals = net, losses, colourized, originals
        self.probes, self.names = probes, names

    def _photos(self):
        for name, rgb in self.colourized.items():
            lab = self.originals[name]
            grey = to_uint8(lab[..., 0], 0, 100)
            yield name, grey, to_uint8(rgb, 0, 1), to_uint8(lab_to_rgb(lab), 0, 1)

    def figures(self):
        s = self.summary
        panels = []
        for name, grey, colour, original in self._photos():
            panels += [Panel(f"{name}: lightness (the input)", image=grey),
                       Panel(f"{name}: colourized", image=colour), Panel(f"{name}: original", image=original)]
        out = {"colourized": figure(panels, columns=3, title=f"Colourized after {s['steps']} steps; on the test "
                                    f"squares the RMS error of (a, b) is {s['colour_rmse']:.1f}, of the mean colour "
                                    f"{s['baseline_colour_rmse']:.1f}")}
        if self.losses:
            window = max(1, min(50, len(self.losses) // 5))
            running = np.convolve(self.losses, np.ones(window) / window, mode="valid")
            out["training"] = curves({"training loss (one batch)": self.losses,
                                      f"mean of the last {window} steps": np.concatenate(
                                          [np.full(window - 1, np.nan), running]),
                                      "the mean colour's (test squares)": [(s["baseline_colour_rmse"] / AB_UNIT) ** 2]
                                      * len(self.losses)},
                                     title="Colorization: squared error of (a, b) / 100", ylabel="mean squared error",
                                     log=True)
        accuracy = ", ".join(f"{name} {value:.0%}" for name, value in s["probe_accuracy"].items())
        out["probe"] = bars(self.probes, self.names, ylabel="test accuracy", low=0, high=1.1,
                            title=f"Linear probe: which image is a grey patch from?\n{accuracy} "
                                  f"(chance {s['chance']:.0%})")
        return out

    def pictures(self):
        return {f"{name}_colourized": colour for name, _, colour, _ in self._photos()}
