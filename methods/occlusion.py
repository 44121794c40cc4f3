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

The model's layers are read from the model (``named_layers()``, minigrad.models' VGG/AlexNet
steps, a flat ``nn.Sequential``, or its leaf modules in order); the sequence is checked against
``model(x)`` once, and if it does not reproduce the model's output, or ``incremental=False``,
every occluded image runs through the whole model.
"""

import time
import warnings

import numpy as np

import minigrad
from minigrad import functional as F
from methods.backprop_images import _deprocessed, check_input, frozen, resolve_targets
from methods.imaging import overlay, to_uint8
from methods.progress import Progress
from methods.result import Result

__all__ = ["occlusion", "occlusion_positions", "OcclusionResult", "add_cli_arguments", "run_cli"]

FILLS = ("zeros", "mean", "blur")


# ----------------------------------------------------------------------------- geometry


def occlusion_positions(extent, size, stride):
    """Top-left coordinates 0, stride, 2 stride, ... <= extent - size, plus extent - size."""
    positions = list(range(0, extent - size + 1, stride))
    if positions[-1] != extent - size:
        positions.append(extent - size)
    return positions


def _gaussian_blur(image, sigma):
    """Separable Gaussian blur of (C, H, W) with reflected edges (radius 3 sigma)."""
    if sigma <= 0:
        return image.copy()
    radius = max(1, int(np.ceil(3 * sigma)))
    taps = np.exp(-0.5 * (np.arange(-radius, radius + 1) / sigma) ** 2)
    taps /= taps.sum()
    out = image.astype(np.float64)
    for axis in (1, 2):
        padded = np.pad(out, [(0, 0)] + [(radius, radius) if a == axis else (0, 0) for a in (1, 2)], mode="reflect")
        out = sum(t * np.take(padded, np.arange(i, i + out.shape[axis]), axis=axis) for i, t in enumerate(taps))
    return out.astype(image.dtype)


# ----------------------------------------------------------------------------- the model's layers


class _Step:
    """One layer as the incremental engine sees it.

    kind "window": a conv/pool with (kernel, stride, padding, dilation) per axis, evaluated on
    a window with padding 0 by ``run``; ``pad_value`` fills the border. kind "pointwise": the
    same at every position (ReLU, BN in eval, dropout in eval, LRN). kind "global": anything
    else, after which the engine stops being incremental.
    """

    def __init__(self, name, module, kind, run=None, kernel=None, stride=None, padding=None, dilation=(1, 1),
                 pad_value=0.0):
        self.name, self.module, self.kind, self.run = name, module, kind, run
        self.kernel, self.stride, self.padding, self.dilation = kernel, stride, padding, dilation
        self.pad_value = pad_value


def _pair(v):
    return (int(v), int(v)) if np.isscalar(v) else (int(v[0]), int(v[1]))


def _step_for(name, module, input_shape):
    if module is None:
        return _Step(name, module, "global")
    kind = type(module).__name__
    if kind == "Conv2d":
        return _Step(name, module, "window",
                     lambda t, m=module: F.conv2d(t, m.weight, m.bias, m.stride, 0, m.dilation, m.groups),
                     _pair(module.kernel_size), _pair(module.stride), _pair(module.padding), _pair(module.dilation))
    if kind == "MaxPool2d":
        k, s = _pair(module.kernel_size), _pair(module.stride)
        return _Step(name, module, "window", lambda t, k=k, s=s: F.max_pool2d(t, k, s, 0),
                     k, s, _pair(module.padding), pad_value=-np.inf)
    if kind == "AvgPool2d" and (getattr(module, "count_include_pad", True) or _pair(module.padding) == (0, 0)):
        k, s = _pair(module.kernel_size), _pair(module.stride)
        return _Step(name, module, "window", lambda t, k=k, s=s: F.avg_pool2d(t, k, s, 0), k, s, _pair(module.padding))
    if kind in ("ReLU", "LeakyReLU", "Dropout", "BatchNorm2d", "LocalResponseNorm", "Identity"):
        return _Step(name, module, "pointwise", module)
    if kind == "AdaptiveAvgPool2d" and input_shape is not None and len(input_shape) == 4 \
            and _pair(module.output_size) == tuple(input_shape[2:]):
        return _Step(name, module, "pointwise", lambda t: t)
    return _Step(name, module, "global")


def _leaves(module, prefix=""):
    children = list(module.named_children()) if hasattr(module, "named_children") else []
    if not children:
        return [(prefix, module)]
    out = []
    for name, child in children:
        out += _leaves(child, name)
    return out


def layer_sequence(model):
    """[(name, module)] the model applies in order (None for a plain flatten), or None when it
    does not show one: ``model.named_layers()`` (every minigrad.models model), a ``layers``
    Sequential, or the model's leaf modules in registration order."""
    if hasattr(model, "named_layers"):
        return list(model.named_layers())
    layers = getattr(model, "layers", None)
    if layers is not None and hasattr(layers, "named_children"):
        return _leaves(layers)
    if hasattr(model, "named_children"):
        return _leaves(model)
    return None


def _run_sequence(sequence, x):
    """Forward through the sequence, flattening before the first fully connected layer."""
    for _, module in sequence:
        if module is None or (type(module).__name__ == "Linear" and x.ndim > 2):
            x = x.reshape(x.shape[0], -1)
        if module is not None:
            x = module(x)
    return x


# ----------------------------------------------------------------------------- the engine


class _IncrementalEngine:
    """Class scores of one image under a batch of occluders, recomputing only what changes."""

    def __init__(self, sequence, image, device="cpu"):
        self.sequence, self.device = sequence, device
        x = minigrad.tensor(image[None]).to(device)
        self.steps, self.inputs = [], []
        for name, module in sequence:
            step = _step_for(name, module, x.shape)
            if step.kind == "global":
                break
            self.steps.append(step)
            self.inputs.append(x.data)
            x = module(x)
        self.stop_input = x.data
        self.rest = sequence[len(self.steps):]
        self.logits = _run_sequence(self.rest, x).data[0]  # to check the sequence against the model
        xp = minigrad.get_array_module(x.data)
        self.padded = []
        for step, a in zip(self.steps, self.inputs):
            if step.kind == "window":
                (ph, pw), value = step.padding, step.pad_value
                self.padded.append(xp.pad(a[0], ((0, 0), (ph, ph), (pw, pw)), constant_values=value))
            else:
                self.padded.append(None)

    @staticmethod
    def _axis(starts, extent, n_in, n_out, k, s, p, d):
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
        for step, base, padded in zip(self.steps, self.inputs, self.padded):
            if step.kind == "pointwise":
                patch = step.run(minigrad.tensor(patch)).data
                continue
            (kh, kw), (sh, sw), (ph, pw), (dh, dw) = step.kernel, step.stride, step.padding, step.dilation
            n_in_h, n_in_w = base.shape[2:]
            n_out_h = (n_in_h + 2 * ph - dh * (kh - 1) - 1) // sh + 1
            n_out_w = (n_in_w + 2 * pw - dw * (kw - 1) - 1) // sw + 1
            sty, ch = self._axis(ys, h, n_in_h, n_out_h, kh, sh, ph, dh)
            stx, cw = self._axis(xs, w, n_in_w, n_out_w, kw, sw, pw, dw)
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
            patch = step.run(minigrad.tensor(windows)).data
            ys, xs, h, w = sty, stx, ch, cw
        full = xp.repeat(self.stop_input, len(ys), axis=0)
        if full.ndim == 4:
            for b in range(len(ys)):
                full[b, :, ys[b]:ys[b] + h, xs[b]:xs[b] + w] = patch[b]
        else:  # no spatial layer at all
            full = patch
        return _run_sequence(self.rest, minigrad.tensor(full)).data


# ----------------------------------------------------------------------------- the technique


class OcclusionResult(Result):
    """Maps over occluder positions, (N, rows, cols): ``probability`` of the target class,
    ``top_class`` and ``top_probability`` (the most probable class and its probability);
    ``pixel_map`` (N, H, W) the target probability averaged over the occluders covering each
    pixel (the unoccluded one where none does); ``base_probability`` (N,) without occluder; ``rows``/``cols`` the positions."""

    technique = "occlusion"

    def __init__(self, probability, top_class, top_probability, pixel_map, base_probability, targets, rows, cols,
                 images, params, **extras):
        self.probability, self.top_class, self.top_probability = probability, top_class, top_probability
        self.pixel_map, self.base_probability, self.targets = pixel_map, base_probability, targets
        self.rows, self.cols, self.images = rows, cols, images
        super().__init__(params, **extras)

    def pictures(self):
        pictures = {}
        for i, image in enumerate(self.images):
            pictures[f"{i}_probability"] = to_uint8(self.probability[i], 0.0, 1.0)
            pictures[f"{i}_overlay"] = overlay(image, self.pixel_map[i])
            classes = self.top_class[i]
            palette = np.random.default_rng(0).integers(0, 256, (int(classes.max()) + 1, 3)).astype(np.uint8)
            palette[self.targets[i] if self.targets[i] < len(palette) else 0] = (255, 255, 255)
            pictures[f"{i}_top_class"] = palette[classes]
        return pictures


def _fill_patches(image, fill, size, blur_sigma):
    if fill == "zeros":
        return np.zeros_like(image)
    if fill == "mean":
        return np.broadcast_to(image.mean(axis=(1, 2), keepdims=True), image.shape).astype(image.dtype)
    return _gaussian_blur(image, blur_sigma if blur_sigma is not None else size / 4.0)


def occlusion(model, x, target=None, size=None, stride=None, fill="zeros", batch_size=32, incremental=True,
              blur_sigma=None, progress=None):
    """Occlusion maps of a preprocessed (N, C, H, W) batch (Zeiler & Fergus 2014, sec. 4.2).

    ``target``: None (each image's top class), an int, or one per image. ``size``/``stride``:
    the square occluder's side and step in pixels (default: side // 7, and half the size).
    ``fill``: "zeros" (0 in the model's input space: the dataset mean colour), "mean" (the
    image's mean colour) or "blur" (Gaussian blur, sigma ``blur_sigma`` or size/4).
    ``batch_size`` occluded copies per pass; ``incremental`` recomputes only what an occluder
    can change. Returns an :class:`OcclusionResult`.
    """
    x = check_input(model, x)
    device = minigrad.Tensor(x).device  # the model runs where the images are; maps come back to NumPy
    x = minigrad.Tensor(x).numpy()
    n, c, height, width = x.shape
    size = max(1, min(height, width) // 7) if size is None else int(size)
    stride = max(1, size // 2) if stride is None else int(stride)
    if not 1 <= size <= min(height, width):
        raise ValueError(f"occluder size {size} must be between 1 and the image side ({min(height, width)})")
    if stride < 1:
        raise ValueError(f"stride must be positive, got {stride}")
    if fill not in FILLS:
        raise ValueError(f"unknown fill {fill!r}; choose one of {', '.join(FILLS)}")
    if batch_size < 1:
        raise ValueError(f"batch_size must be positive, got {batch_size}")
    rows, cols = occlusion_positions(height, size, stride), occlusion_positions(width, size, stride)
    grid_y, grid_x = np.meshgrid(rows, cols, indexing="ij")
    ys_all, xs_all = grid_y.ravel(), grid_x.ravel()
    start = time.perf_counter()
    with frozen(model), minigrad.no_grad():
        base_logits = model(minigrad.tensor(x).to(device)).numpy()
        targets = resolve_targets(target, base_logits)
        base_probability = F.softmax(minigrad.tensor(base_logits.astype(np.float64)), axis=1).numpy()
        base_probability = base_probability[np.arange(n), targets]
        sequence = layer_sequence(model) if incremental else None
        used_incremental = sequence is not None
        probability = np.empty((n, len(ys_all)))
        top_class = np.empty((n, len(ys_all)), dtype=np.int64)
        top_probability = np.empty((n, len(ys_all)))
        batches = [(i, b) for i in range(n) for b in range(0, len(ys_all), batch_size)]
        engine, engine_image = None, -1
        for i, b in Progress(batches, "occlusion", verbose=progress):
            image = x[i]
            ys, xs = ys_all[b:b + batch_size], xs_all[b:b + batch_size]
            filler = _fill_patches(image, fill, size, blur_sigma)
            patch = np.stack([filler[:, y:y + size, x0:x0 + size] for y, x0 in zip(ys, xs)])
            if used_incremental and engine_image != i:
                engine, engine_image = _IncrementalEngine(sequence, image, device), i
                check = minigrad.Tensor(engine.logits).numpy()
                if check.shape != base_logits[i].shape or not np.allclose(check, base_logits[i], rtol=1e-4, atol=1e-5):
                    warnings.warn("occlusion: the model's layer sequence does not reproduce its output; "
                                  "running every occluded image through the whole model instead")
                    used_incremental = False
            if used_incremental:
                logits = engine.scores(ys, xs, patch)
            else:
                occluded = np.repeat(image[None], len(ys), axis=0)
                for k, (y, x0) in enumerate(zip(ys, xs)):
                    occluded[k, :, y:y + size, x0:x0 + size] = patch[k]
                logits = model(minigrad.tensor(occluded).to(device)).data
            probs = F.softmax(minigrad.tensor(minigrad.Tensor(logits).numpy().astype(np.float64)), axis=1).numpy()
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
    # pixels no occluder covers (stride > size) keep the unoccluded probability
    pixel_map = np.where(count > 0, total / np.maximum(count, 1), base_probability[:, None, None])
    params = {"target": target, "size": size, "stride": stride, "fill": fill, "batch_size": batch_size,
              "incremental": incremental, "blur_sigma": blur_sigma}
    return OcclusionResult(probability, top_class, top_probability, pixel_map, base_probability, targets,
                           np.asarray(rows), np.asarray(cols), _deprocessed(model, x), params,
                           seconds=seconds, used_incremental=used_incremental, positions=len(ys_all))


def add_cli_arguments(parser):
    parser.add_argument("--target", type=int, default=None, help="class index (default: each image's top class)")
    parser.add_argument("--size", type=int, default=None, help="occluder side in pixels (default: image side // 7)")
    parser.add_argument("--stride", type=int, default=None, help="occluder step in pixels (default: size // 2)")
    parser.add_argument("--fill", choices=FILLS, default="zeros",
                        help="what covers the square: zeros (the dataset mean colour after preprocessing), "
                             "mean (the image's mean colour) or blur (default: zeros)")
    parser.add_argument("--batch-size", type=int, default=32, help="occluded copies per forward pass (default: 32)")
    parser.add_argument("--full", action="store_true", help="recompute the whole network for every occluder "
                                                           "(default: incremental inference)")


def run_cli(args, model, x):
    return occlusion(model, x, args.target, args.size, args.stride, args.fill, args.batch_size, not args.full)
