"""Maximally activating patches: the image regions that drive one channel of one layer hardest.

Girshick, Donahue, Darrell & Malik, "Rich feature hierarchies for accurate object detection and
semantic segmentation", CVPR 2014, fig. 4 (top pool5 units of AlexNet over held-out images); the
lecture notes: "pick a layer and a channel ... choose the patch of image that maximally
activates it". Yosinski et al.'s deep-visualization toolbox shows the top 9 per channel (its
``--N 9``), our default ``k``.

A unit at output position (r, c) of a layer sees exactly the input pixels of its receptive
field. :func:`receptive_field` derives it from the layer geometry -- kernel, stride, padding and
dilation of every convolution and pooling up to the layer, read from the model's own modules --
with the usual recurrences (effective kernel k_e = d (k - 1) + 1):

    jump_out = jump_in * s        size_out = size_in + (k_e - 1) * jump_in
    start_out = start_in - p * jump_in

so unit (r, c) covers rows start + r * jump ... start + r * jump + size - 1 (same for columns).
Parts of that window beyond the image (the padding) are cut off: such a patch is reported with
``clipped=True`` and both its full and its clipped box. Layers after a flatten / linear layer see
the whole image; their "patch" is the whole image. For VGG16 this gives conv5_3: 196 px and
pool5: 212 px, the known values.

By default at most one patch per image is kept (its strongest position), as Girshick et al. and
the toolbox do, so the top k are k different images; ``per_image=None`` allows several.
"""

import os
import time

import numpy as np

import minigrad
from methods import imaging
from methods.activations import layer_activations
from methods.backprop_images import check_layer
from methods.progress import Progress
from methods.result import Result

__all__ = ["receptive_field", "receptive_fields", "maximally_activating_patches", "load_dataset",
           "PatchesResult", "add_cli_arguments", "run_cli"]

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".tif", ".tiff", ".webp")


# ----------------------------------------------------------------------------- the layers


def _pair(value):
    return (int(value), int(value)) if np.isscalar(value) else (int(value[0]), int(value[1]))


def named_layers(model):
    """[(name, module)] in forward order, from the model's own modules (see occlusion.layer_sequence)."""
    from methods.occlusion import layer_sequence

    sequence = layer_sequence(model)
    if sequence is None:
        raise ValueError("the model does not list its layers (named_layers()); cannot derive receptive fields")
    return sequence


class ReceptiveField:
    """Geometry of one layer's units in input pixels, per axis (rows, columns): ``size`` (the
    receptive field's side), ``jump`` (pixels between neighbouring units), ``start`` (top-left
    pixel of unit 0, negative inside the padding). ``whole_image``: the unit sees everything."""

    def __init__(self, size=(1, 1), jump=(1, 1), start=(0, 0), whole_image=False):
        self.size, self.jump, self.start, self.whole_image = tuple(size), tuple(jump), tuple(start), whole_image

    def then(self, kernel, stride, padding, dilation=(1, 1)):
        size, jump, start = [], [], []
        for a in range(2):
            effective = dilation[a] * (kernel[a] - 1) + 1
            size.append(self.size[a] + (effective - 1) * self.jump[a])
            start.append(self.start[a] - padding[a] * self.jump[a])
            jump.append(self.jump[a] * stride[a])
        return ReceptiveField(size, jump, start, self.whole_image)

    def box(self, row, col):
        """(top, left, bottom, right), bottom/right exclusive, of unit (row, col); may leave the image."""
        top = self.start[0] + row * self.jump[0]
        left = self.start[1] + col * self.jump[1]
        return top, left, top + self.size[0], left + self.size[1]

    def __repr__(self):
        return f"ReceptiveField(size={self.size}, jump={self.jump}, start={self.start}, whole_image={self.whole_image})"


def _step(field, module, shape):
    """The field after ``module`` applied to an input of ``shape`` (or None when unknown)."""
    kind = type(module).__name__
    if field.whole_image or module is None:
        return ReceptiveField(whole_image=True) if module is None else field
    if kind == "Conv2d":
        return field.then(_pair(module.kernel_size), _pair(module.stride), _pair(module.padding),
                          _pair(getattr(module, "dilation", 1)))
    if kind in ("MaxPool2d", "AvgPool2d"):
        k = _pair(module.kernel_size)
        s = k if getattr(module, "stride", None) is None else _pair(module.stride)
        return field.then(k, s, _pair(getattr(module, "padding", 0)), _pair(getattr(module, "dilation", 1)))
    if kind == "AdaptiveAvgPool2d":
        out = _pair(module.output_size)
        if shape is not None and len(shape) == 4:
            h, w = shape[2:]
            if (h, w) == out:
                return field
            if h % out[0] == 0 and w % out[1] == 0:  # then it is exactly an average pool
                k = (h // out[0], w // out[1])
                return field.then(k, k, (0, 0))
        return ReceptiveField(whole_image=True)
    if kind in ("ReLU", "LeakyReLU", "Dropout", "BatchNorm2d", "LocalResponseNorm", "Identity", "Sigmoid", "Tanh"):
        return field
    return ReceptiveField(whole_image=True)  # Linear, Flatten and anything unknown mix all positions


def receptive_fields(model, input_shape=None):
    """{layer name: :class:`ReceptiveField`} for every named layer of ``model``, derived from its
    modules' kernel sizes, strides, paddings and dilations. ``input_shape`` (N, C, H, W) is needed
    only to resolve adaptive pooling (identity when the sizes already match)."""
    fields, field = {}, ReceptiveField()
    shape = input_shape
    for name, module in named_layers(model):
        field = _step(field, module, shape)
        shape = _output_shape(module, shape)
        fields[name] = field
    return fields


def _output_shape(module, shape):
    if shape is None or len(shape) != 4:
        return None
    kind = type(module).__name__
    n, c, h, w = shape
    if kind in ("Conv2d", "MaxPool2d", "AvgPool2d"):
        k = _pair(module.kernel_size)
        s = k if getattr(module, "stride", None) is None else _pair(module.stride)
        p, d = _pair(getattr(module, "padding", 0)), _pair(getattr(module, "dilation", 1))
        size = [(x + 2 * p[a] - d[a] * (k[a] - 1) - 1) // s[a] + 1 for a, x in enumerate((h, w))]
        return (n, getattr(module, "out_channels", c), size[0], size[1])
    if kind == "AdaptiveAvgPool2d":
        return (n, c) + _pair(module.output_size)
    if kind in ("ReLU", "LeakyReLU", "Dropout", "BatchNorm2d", "LocalResponseNorm", "Identity"):
        return shape
    return None


def receptive_field(model, layer, input_shape=None):
    """The :class:`ReceptiveField` of ``layer``'s units (see :func:`receptive_fields`)."""
    check_layer(model, layer)
    fields = receptive_fields(model, input_shape)
    if layer not in fields:
        raise ValueError(f"unknown layer {layer!r}; the model's layers are: {', '.join(fields)}")
    return fields[layer]


# ----------------------------------------------------------------------------- the data


def input_channels(model):
    """How many channels the model's images have (its attribute, else its first convolution's)."""
    channels = getattr(model, "input_channels", None)
    if channels is not None:
        return int(channels)
    shape = getattr(model, "input_shape", None)
    if shape is not None and len(shape) == 3:
        return int(shape[0])
    for _, module in named_layers(model):
        if type(module).__name__ == "Conv2d":
            return int(module.in_channels if hasattr(module, "in_channels") else module.weight.shape[1])
    return None


def _resize(image, size):
    """Nearest-neighbour resize of a uint8 image to (h, w) (no Pillow needed)."""
    rows = (np.arange(size[0]) * image.shape[0]) // size[0]
    cols = (np.arange(size[1]) * image.shape[1]) // size[1]
    return image[rows][:, cols]


def _photo_sample(size, grayscale):
    """The shipped photographs and textures as a small dataset: from each, the central square and
    the four corner squares (side: the shorter image side), resized to ``size`` (h, w)."""
    from methods import data

    images, labels = [], []
    for label, name in enumerate(sorted(data.SAMPLE_IMAGES)):
        image = data.sample_image(name)
        if grayscale and image.ndim == 3:
            image = np.round(image @ np.array([0.299, 0.587, 0.114])).astype(np.uint8)
        elif not grayscale and image.ndim == 2:
            image = np.repeat(image[..., None], 3, 2)
        h, w = image.shape[:2]
        s = min(h, w)
        for top, left in (((h - s) // 2, (w - s) // 2), (0, 0), (0, w - s), (h - s, 0), (h - s, w - s)):
            images.append(_resize(image[top: top + s, left: left + s], size))
            labels.append(label)
    return np.stack(images), np.array(labels)


def load_dataset(model, spec="sample", limit=None, size=None):
    """(images uint8 (N, H, W[, 3]), labels or None) for the techniques that scan a dataset.

    ``spec``: "sample" -- for a one-channel 28 x 28 model (fashion-vgg) the shipped 2,000
    Fashion-MNIST test images with their labels; for any other model the shipped photographs and
    textures (5 square crops of each, resized to the model's input size, labelled by source
    image) -- or a folder of image files (read in sorted order, grayscale for one-channel models,
    resized to ``size`` (w, h), default the model's input size, else 224 x 224, so they batch
    together; labelled by sub-folder when there are sub-folders).
    """
    channels = input_channels(model)
    if size is None:
        shape = getattr(model, "input_shape", None)
        s = getattr(model, "input_size", None) or (tuple(shape[1:]) if shape is not None and len(shape) == 3 else 224)
        size = (s, s) if np.isscalar(s) else (s[1], s[0])
    if spec == "sample":
        if channels == 1 and tuple(size) == (28, 28):
            from methods import data

            images, labels = data.fashion_sample()
        else:
            images, labels = _photo_sample((size[1], size[0]), grayscale=channels == 1)
        return (images[:limit], labels[:limit]) if limit else (images, labels)
    if not os.path.isdir(spec):
        raise FileNotFoundError(f"dataset {spec!r} is neither 'sample' nor a folder of images")
    files = sorted(os.path.join(root, f) for root, _, names in os.walk(spec) for f in names
                   if f.lower().endswith(IMAGE_SUFFIXES))
    if not files:
        raise ValueError(f"no image files ({', '.join(IMAGE_SUFFIXES)}) under {spec}")
    files = files[:limit] if limit else files
    images = np.stack([imaging.load_image(f, size=size, grayscale=channels == 1) for f in files])
    folders = [os.path.relpath(os.path.dirname(f), spec) for f in files]
    labels = None
    if any(f != "." for f in folders):
        names = sorted(set(folders))
        labels = np.array([names.index(f) for f in folders])
    return images, labels


def default_layer(model):
    """The last pooling layer (Girshick et al. look at pool5 of AlexNet), else the last convolution."""
    layers = named_layers(model)
    for kinds in (("MaxPool2d", "AvgPool2d"), ("Conv2d",)):
        found = [name for name, module in layers if type(module).__name__ in kinds]
        if found:
            return found[-1]
    raise ValueError("the model has no convolution or pooling layer to search")


# ----------------------------------------------------------------------------- the search


def maximally_activating_patches(model, images, layer, channel, k=9, per_image=1, batch_size=64, x=None,
                                 verbose=None):
    """The top-``k`` units of ``channel`` in ``layer`` over a dataset, with their image patches.

    ``images``: the dataset as uint8 images (N, H, W[, 3]) (what the patches are cut from);
    ``x`` the same images preprocessed (default ``model.preprocess(images)``). ``per_image``: at
    most this many units per image (1 = the strongest position of each image, default; None =
    any number). Returns a :class:`PatchesResult` with, per patch: activation value, image
    index, unit position (row, col), the receptive-field box (top, left, bottom, right; may
    reach outside the image), the clipped box actually cut out, and whether it was clipped.
    """
    start_time = time.perf_counter()
    images = np.asarray(images)
    if images.ndim not in (3, 4) or len(images) == 0:
        raise ValueError(f"images must be a non-empty uint8 batch (N, H, W) or (N, H, W, C), got shape {images.shape}")
    if x is None:
        x = model.preprocess(list(images)) if images.ndim == 4 or input_channels(model) != 1 else model.preprocess(images)
    x = x.data if isinstance(x, minigrad.Tensor) else np.asarray(x)
    if len(x) != len(images):
        raise ValueError(f"{len(x)} preprocessed images for {len(images)} images")
    if not (isinstance(k, (int, np.integer)) and k >= 1):
        raise ValueError(f"k must be a positive integer, got {k!r}")
    check_layer(model, layer)
    field = receptive_field(model, layer, x.shape)

    values = np.empty(0)
    keys = np.empty((0, 3), np.int64)  # (image, row, col)
    n_channels = None
    batches = range(0, len(x), batch_size)
    for first in Progress(batches, f"patches {layer}:{channel}", verbose=verbose):
        acts = layer_activations(model, x[first: first + batch_size], layer)
        if acts.ndim == 2:
            acts = acts[:, :, None, None]
        n_channels = acts.shape[1]
        if not 0 <= int(channel) < n_channels:
            raise ValueError(f"channel {channel} out of range: layer {layer!r} has {n_channels} channels (0..{n_channels - 1})")
        a = acts[:, int(channel)].astype(np.float64)
        n, h, w = a.shape
        flat = a.reshape(n, -1)
        if per_image is not None:
            m = min(int(per_image), h * w)
            part = np.argpartition(-flat, m - 1, axis=1)[:, :m] if m < h * w else np.tile(np.arange(h * w), (n, 1))
            cand_img = np.repeat(np.arange(n), part.shape[1])
            cand_pos = part.ravel()
        else:
            cand_img, cand_pos = np.divmod(np.arange(n * h * w), h * w)
        cand_val = flat[cand_img, cand_pos]
        cand = np.stack([cand_img + first, cand_pos // w, cand_pos % w], 1)
        values = np.concatenate([values, cand_val])
        keys = np.concatenate([keys, cand])
        if len(values) > k:
            # stable order: higher activation first, then earlier image, row, column
            order = np.lexsort((keys[:, 2], keys[:, 1], keys[:, 0], -values))[:k]
            values, keys = values[order], keys[order]
    order = np.lexsort((keys[:, 2], keys[:, 1], keys[:, 0], -values))[:k]
    values, keys = values[order], keys[order]

    height, width = images.shape[1:3]
    records, crops = [], []
    for value, (index, row, col) in zip(values, keys):
        if field.whole_image:
            box = (0, 0, height, width)
        else:
            box = field.box(int(row), int(col))
        clipped_box = (max(box[0], 0), max(box[1], 0), min(box[2], height), min(box[3], width))
        records.append(dict(activation=float(value), image=int(index), unit=(int(row), int(col)), box=box,
                            clipped_box=clipped_box, clipped=clipped_box != box))
        crops.append(images[index, clipped_box[0]: clipped_box[2], clipped_box[1]: clipped_box[3]].copy())
    params = dict(layer=layer, channel=int(channel), k=int(k), per_image=per_image, dataset_size=len(images))
    return PatchesResult(params, records, crops, field, seconds=time.perf_counter() - start_time)


class PatchesResult(Result):
    """``patches``: list of dicts (activation, image, unit, box, clipped_box, clipped), best first;
    ``crops``: the image pixels inside each clipped box; ``field``: the layer's receptive field."""

    technique = "patches"

    def __init__(self, params, patches, crops, field, seconds=0.0):
        super().__init__(params, patches=patches, receptive_field=dict(size=field.size, jump=field.jump,
                                                                      start=field.start, whole_image=field.whole_image),
                         seconds=seconds)
        self.patches, self.crops, self.field = patches, crops, field

    def padded(self, fill=128):
        """Each crop placed where it sits inside its full receptive-field window (the part beyond the
        image filled with ``fill``), so all tiles have one size and clipped ones show where the edge was."""
        out = []
        for record, crop in zip(self.patches, self.crops):
            top, left, bottom, right = record["box"]
            ct, cl = record["clipped_box"][:2]
            tile = np.full((bottom - top, right - left) + crop.shape[2:], fill, np.uint8)
            tile[ct - top: ct - top + crop.shape[0], cl - left: cl - left + crop.shape[1]] = crop
            out.append(tile)
        return out

    def pictures(self):
        tiles = self.padded()
        if not tiles:
            return {}
        size = max(tiles[0].shape[:2])
        factor = max(1, 64 // size)
        tiles = [np.kron(t, np.ones((factor, factor) + (1,) * (t.ndim - 2), np.uint8)) for t in tiles]
        return {f"{self.params['layer']}_{self.params['channel']}": imaging.grid(tiles, pad=2)}


def add_cli_arguments(parser):
    parser.add_argument("--layer", default=None,
                        help="layer to search (default: the last pooling layer, e.g. pool5 as in Girshick et al.)")
    parser.add_argument("--channel", type=int, default=0, help="channel (unit) of that layer (default: 0)")
    parser.add_argument("-k", "--top", type=int, default=9, help="how many patches (default: 9)")
    parser.add_argument("--per-image", type=int, default=1,
                        help="at most this many patches per image; 0 = no limit (default: 1)")
    parser.add_argument("--dataset", default="sample",
                        help="'sample' (the shipped Fashion-MNIST sample for fashion-vgg, the shipped photos for "
                             "other models) or a folder of images (default: sample)")
    parser.add_argument("--limit", type=int, default=None, help="scan only the first N dataset images")


def run_cli(args, model, x):
    images, _ = load_dataset(model, args.dataset, limit=args.limit)
    layer = args.layer or default_layer(model)
    return maximally_activating_patches(model, images, layer, args.channel, k=args.top,
                                        per_image=args.per_image or None)
