"""Occlusion sensitivity (Zeiler & Fergus 2014), with incremental inference.

Zeiler & Fergus, "Visualizing and Understanding Convolutional Networks", ECCV 2014
(arXiv:1311.2901), sec. 4.2 and fig. 7: slide a grey square over the image and record, at
each position, the probability of the correct class and the most probable class. The paper
gives no square size or step; our defaults are a square of 1/7 of the image side (32 px at
224, 4 px at 28) moved by half its size, and the fill "zeros", which is the dataset mean
colour for mean-subtracted models (the paper's grey); "mean" fills with the image's own mean
colour and "blur" with a Gaussian-blurred copy of the covered pixels. The last row and
column of positions sit flush with the image edge, so every pixel is covered.

Incremental inference. An occluder changes only a rectangle of the input, and a convolution
or pooling layer changes only the outputs whose windows meet that rectangle. So for each
occluder position we keep the unoccluded image's activations and recompute, layer by layer,
just the rectangle that can differ (from a window of the layer's input that is the stored
activation with the changed rectangle pasted in); element-wise layers map the rectangle to
itself. At the first layer that mixes all positions (adaptive pooling that is not an
identity, flatten, fully connected) the rectangle is pasted into the stored activation and
the rest of the network runs as usual. The rectangle is recomputed from exactly the same
inputs with the same weights, so the map is the same as recomputing everything (up to the
summation order of the convolution kernels; see the tests and the benchmark). Positions are
batched (``batch_size`` occluded copies per pass).

The layers and their window geometry come from the model's declared interface
(``model.geometry()``); the sequence is checked against ``model(x)`` once, and if the model
does not run its layers in sequence (a functional-style ``nn.Module``), if the sequence does not
reproduce the model's output, or with ``incremental=False``, every occluded image runs through
the whole model.

``.maps`` (N, H, W) is the drop in the target's probability caused by covering each pixel,
averaged over the occluders that cover it (Captum's convention for occlusion attributions).
"""

import time
import warnings

import numpy as np

import minigrad
from methods.lib.attribution import AttributionResult, class_title
from methods.lib.figures import Panel
from methods.lib.images import require, to_uint8
from methods.lib.inputs import frozen, probabilities, resolve_targets, to_host
from methods.lib.options import Option, technique
from methods.lib.progress import Progress
from methods.lib.regularizers import gaussian_blur

__all__ = ["OcclusionResult", "occlusion", "occlusion_positions"]

FILLS = ("zeros", "mean", "blur")


def occlusion_positions(extent, size, stride):
    """Top-left coordinates 0, stride, 2 stride, ... <= extent - size, plus extent - size."""
    positions = list(range(0, extent - size + 1, stride))
    if positions[-1] != extent - size:
        positions.append(extent - size)
    return positions


class _IncrementalEngine:
    """Class scores of one image under a batch of occluders, recomputing only what changes."""

    def __init__(self, model, image, device="cpu"):
        self.device = device
        x = minigrad.tensor(image[None]).to(device)
        self.steps, self.inputs = [], []
        geometry = model.geometry(tuple(image.shape[1:]))
        for layer in geometry:
            if layer.kind == "global":
                break
            self.steps.append(layer)
            self.inputs.append(x.data)
            x = layer.module(x)
        self.stop_input = x.data
        self.rest = [layer.module for layer in geometry[len(self.steps):]]
        self.logits = self._finish(x).data[0]  # to check the sequence against the model
        xp = minigrad.get_array_module(x.data)
        self.padded = []
        for step, a in zip(self.steps, self.inputs):
            if step.kind == "window":
                (ph, pw), value = step.window.padding, step.window.pad_value
                self.padded.append(xp.pad(a[0], ((0, 0), (ph, ph), (pw, pw)), constant_values=value))
            else:
                self.padded.append(None)

    def _finish(self, x):
        for module in self.rest:
            x = module(x)
        return x

    @staticmethod
    def _axis(starts, extent, n_out, k, s, p, d):
        """Output rows [st, st + count) that rows [starts, starts + extent) of the input can change."""
        lo = -((-(starts + p - (k - 1) * d)) // s)  # ceil
        hi = (starts + extent - 1 + p) // s
        count = int(min(max((hi - lo + 1).max(), 1), n_out))
        st = np.minimum(np.maximum(lo, 0), n_out - count)
        return st, count

    def scores(self, ys, xs, patch):
        """Logits for occluders whose (B, C, h, w) ``patch`` sits at rows ``ys``, columns ``xs``."""
        patch = minigrad.tensor(patch).to(self.device).data
        xp = minigrad.get_array_module(patch)
        h, w = patch.shape[2:]
        for step, padded in zip(self.steps, self.padded):
            if step.kind == "pointwise":
                patch = step.module(minigrad.tensor(patch)).data
                continue
            window = step.window
            (kh, kw), (sh, sw), (ph, pw), (dh, dw) = window.kernel, window.stride, window.padding, window.dilation
            sty, ch = self._axis(ys, h, step.output_size[0], kh, sh, ph, dh)
            stx, cw = self._axis(xs, w, step.output_size[1], kw, sw, pw, dw)
            win_h, win_w = (ch - 1) * sh + (kh - 1) * dh + 1, (cw - 1) * sw + (kw - 1) * dw + 1
            windows = xp.empty((len(ys), padded.shape[0], win_h, win_w), dtype=padded.dtype)
            for b in range(len(ys)):
                windows[b] = padded[:, sty[b] * sh:sty[b] * sh + win_h, stx[b] * sw:stx[b] * sw + win_w]
                # the changed rectangle, in padded coordinates, clipped to this window
                r0, c0 = ys[b] + ph - sty[b] * sh, xs[b] + pw - stx[b] * sw
                ra, rb = max(r0, 0), min(r0 + h, win_h)
                ca, cb = max(c0, 0), min(c0 + w, win_w)
                if ra < rb and ca < cb:
                    windows[b, :, ra:rb, ca:cb] = patch[b, :, ra - r0:rb - r0, ca - c0:cb - c0]
            patch = step.unpadded(minigrad.tensor(windows)).data
            ys, xs, h, w = sty, stx, ch, cw
        full = xp.repeat(self.stop_input, len(ys), axis=0)
        if full.ndim == 4:
            for b in range(len(ys)):
                full[b, :, ys[b]:ys[b] + h, xs[b]:xs[b] + w] = patch[b]
        else:  # no spatial layer at all
            full = patch
        return self._finish(minigrad.tensor(full)).data


class OcclusionResult(AttributionResult):
    """``maps`` (N, H, W): the drop in the target's probability when each pixel is covered
    (averaged over the occluders covering it); over the occluder positions (N, rows, cols):
    ``probability`` of the target, ``top_class`` and ``top_probability``; ``base_probability``
    (N,) without occluder; ``rows`` / ``cols`` the positions' top-left corners."""

    def __init__(self, maps, images, titles, targets, base_probability, probability, top_class, top_probability,
                 rows, cols, class_names, **summary):
        super().__init__(maps, images, titles, "drop in p(target)", targets, base_probability, cmap="RdBu_r",
                         symmetric=True, **summary)
        self.probability, self.top_class, self.top_probability = probability, top_class, top_probability
        self.base_probability, self.rows, self.cols, self.class_names = base_probability, rows, cols, class_names

    def panels(self, i):
        target = self.targets[i]
        classes = sorted(set(self.top_class[i].ravel().tolist()))
        palette = _palette(len(classes))
        colours = {c: palette[k] for k, c in enumerate(classes)}
        top = np.array([[colours[c] for c in row] for row in self.top_class[i]], np.uint8)
        legend = [(colours[c], f"{self.class_names[c]}{' (target)' if c == target else ''}") for c in classes]
        return [Panel(self.titles[i], image=self.images[i]),
                Panel("p(target) by occluder position", values=self.probability[i], cmap="viridis",
                      label=f"p({self.class_names[target]})"),
                Panel("overlay: drop in p(target)", image=self.images[i], values=self.maps[i], cmap="RdBu_r",
                      symmetric=True, label="drop in p(target)"),
                Panel("most probable class", image=top, legend=legend)]

    def pictures(self):
        out = {}
        for i in range(len(self.images)):
            lo, hi = float(self.probability[i].min()), float(self.probability[i].max())
            out[f"{i}_probability"] = to_uint8(self.probability[i], lo, hi)
        return out


def _palette(n):
    """``n`` distinguishable uint8 RGB colours (matplotlib's tab10/tab20)."""
    colormap = require("matplotlib", "drawing figures").colormaps["tab10" if n <= 10 else "tab20"]
    return [tuple(int(255 * v) for v in colormap(k % colormap.N)[:3]) for k in range(n)]


def _fill_patches(image, fill, size, blur_sigma):
    if fill == "zeros":
        return np.zeros_like(image)
    if fill == "mean":
        return np.broadcast_to(image.mean(axis=(1, 2), keepdims=True), image.shape).astype(image.dtype)
    return gaussian_blur(image[None], blur_sigma if blur_sigma is not None else size / 4.0)[0]


@technique("occlusion", "Occlusion sensitivity maps", "Zeiler & Fergus 2014", [
    Option("target", "target", None, "class index or name (default: each image's top class)"),
    Option("size", "int", None, "occluder side in pixels (default: image side // 7)", low=1),
    Option("stride", "int", None, "occluder step in pixels (default: half the size)", low=1),
    Option("fill", "choice", "zeros", "what covers the square: zeros (the dataset mean colour after "
                                      "preprocessing), mean (the image's mean colour) or blur", choices=FILLS),
    Option("batch_size", "int", 32, "occluded copies per forward pass", low=1),
    Option("incremental", "bool", True, "recompute only what an occluder can change (else the whole network)"),
    Option("blur_sigma", "float", None, "with fill=blur: the Gaussian's sigma in pixels (default: size / 4)", low=0),
])
def occlusion(model, x, *, target, size, stride, fill, batch_size, incremental, blur_sigma):
    """Occlusion maps of a preprocessed (N, C, H, W) batch (Zeiler & Fergus 2014, sec. 4.2), as
    an :class:`OcclusionResult`."""
    device = minigrad.Tensor(x).device  # the model runs where the images are; maps come back to NumPy
    x = to_host(x)
    n, c, height, width = x.shape
    size = max(1, min(height, width) // 7) if size is None else size
    stride = max(1, size // 2) if stride is None else stride
    if size > min(height, width):
        raise ValueError(f"occluder size {size} must be at most the image side ({min(height, width)})")
    rows, cols = occlusion_positions(height, size, stride), occlusion_positions(width, size, stride)
    grid_y, grid_x = np.meshgrid(rows, cols, indexing="ij")
    ys_all, xs_all = grid_y.ravel(), grid_x.ravel()
    start = time.perf_counter()
    with frozen(model), minigrad.no_grad():
        base_logits = to_host(model(minigrad.tensor(x).to(device)).data)
        targets = resolve_targets(model, target, base_logits)
        base_probability = probabilities(base_logits)[np.arange(n), targets]
        use_incremental = incremental and model.sequential
        probability = np.empty((n, len(ys_all)))
        top_class = np.empty((n, len(ys_all)), dtype=np.int64)
        top_probability = np.empty((n, len(ys_all)))
        batches = [(i, b) for i in range(n) for b in range(0, len(ys_all), batch_size)]
        engine, engine_image = None, -1
        for i, b in Progress(batches, "occlusion"):
            image = x[i]
            ys, xs = ys_all[b:b + batch_size], xs_all[b:b + batch_size]
            filler = _fill_patches(image, fill, size, blur_sigma)
            patch = np.stack([filler[:, y:y + size, x0:x0 + size] for y, x0 in zip(ys, xs)])
            if use_incremental and engine_image != i:
                engine, engine_image = _IncrementalEngine(model, image, device), i
                check = to_host(engine.logits)
                if check.shape != base_logits[i].shape or not np.allclose(check, base_logits[i], rtol=1e-4, atol=1e-5):
                    warnings.warn("occlusion: the model's layer sequence does not reproduce its output; "
                                  "running every occluded image through the whole model instead")
                    use_incremental = False
            if use_incremental:
                logits = engine.scores(ys, xs, patch)
            else:
                occluded = np.repeat(image[None], len(ys), axis=0)
                for k, (y, x0) in enumerate(zip(ys, xs)):
                    occluded[k, :, y:y + size, x0:x0 + size] = patch[k]
                logits = model(minigrad.tensor(occluded).to(device)).data
            probs = probabilities(logits)
            probability[i, b:b + batch_size] = probs[:, targets[i]]
            top_class[i, b:b + batch_size] = probs.argmax(axis=1)
            top_probability[i, b:b + batch_size] = probs.max(axis=1)
    seconds = time.perf_counter() - start
    shape = (n, len(rows), len(cols))
    probability, top_class, top_probability = probability.reshape(shape), top_class.reshape(shape), \
        top_probability.reshape(shape)
    total = np.zeros((n, height, width))
    count = np.zeros((height, width))
    for r, y in enumerate(rows):
        for q, x0 in enumerate(cols):
            total[:, y:y + size, x0:x0 + size] += probability[:, r, q, None, None]
            count[y:y + size, x0:x0 + size] += 1
    # pixels no occluder covers (stride > size) keep the unoccluded probability: no drop
    covered = np.where(count > 0, total / np.maximum(count, 1), base_probability[:, None, None])
    drop = base_probability[:, None, None] - covered
    classes = sorted(set(top_class.ravel().tolist()) | set(targets.tolist()))
    titles = [class_title(model, t, p) for t, p in zip(targets, base_probability)]
    result = OcclusionResult(drop, model.deprocess(x), titles, targets, base_probability, probability, top_class,
                             top_probability, np.asarray(rows), np.asarray(cols),
                             {c: model.label(c) for c in classes}, seconds=seconds,
                             used_incremental=use_incremental, positions=len(ys_all))
    result.params.update(size=size, stride=stride)
    return result
