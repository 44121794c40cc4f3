"""Maximally activating patches: the image regions that drive one channel of one layer hardest.

Girshick, Donahue, Darrell & Malik, "Rich feature hierarchies for accurate object detection and
semantic segmentation", CVPR 2014, fig. 4 (top pool5 units of AlexNet over held-out images); the
lecture notes: "pick a layer and a channel ... choose the patch of image that maximally
activates it". Yosinski et al.'s deep-visualization toolbox shows the top 9 per channel (its
``--N 9``), our default ``k``.

A unit at output position (r, c) of a layer sees exactly the input pixels of its receptive
field (:mod:`methods.lib.receptive`, from the model's declared layer geometry; VGG16 conv5_3:
196 px, pool5: 212 px). Parts of that window beyond the image (the padding) are cut off: such a
patch is reported with ``clipped=True`` and both its full and its clipped box, and drawn inside
its full window with the outside grey. Layers after a flatten / linear layer see the whole image;
their "patch" is the whole image.

By default at most one patch per image is kept (its strongest position), as Girshick et al. and
the toolbox do, so the top k are k different images; ``per_image=0`` allows several.

The dataset is scanned once in batches (:mod:`methods.lib.scan`), keeping per image only the
min(per_image, k) strongest positions of each channel; a running top-k over those gives the
result, so memory does not grow with the dataset. For a folder the per-image peaks are cached on
disk (of every channel when that is small, 512 x 8 bytes per image for VGG16's pool5: another
channel of the same layer then costs no forward pass), and an interrupted scan resumes.
"""

import numpy as np

from methods.lib.datasets import FolderImages, as_dataset
from methods.lib.features import last_pooling, layer_activations
from methods.lib.figures import Panel, figure
from methods.lib.images import enlarge, grid, rgb, upscale_factor
from methods.lib.options import Option, technique
from methods.lib.receptive import ReceptiveField, receptive_field
from methods.lib.result import Result
from methods.lib.scan import ChannelPeaks, TopK, batch_size_for, scan

__all__ = ["PatchesResult", "maximally_activating_patches"]

#: A folder scan keeps the peaks of every channel when they take at most this many values per image.
ALL_CHANNELS_UP_TO = 1024


class PatchesResult(Result):
    """``patches``: list of dicts (activation, image, unit, box, clipped_box, clipped, label),
    best first; ``crops``: the image pixels inside each clipped box; ``field``: the layer's
    receptive field."""

    def __init__(self, layer, channel, patches, crops, field, label_names, **summary):
        super().__init__(patches=patches, receptive_field=field.as_dict(), **summary)
        self.layer, self.channel, self.patches, self.crops, self.field = layer, channel, patches, crops, field
        self.label_names = label_names

    def padded(self, fill=128):
        """Each crop placed where it sits inside its full receptive-field window (the part beyond the
        image filled with ``fill``), so all tiles have one size and clipped ones show where the edge was."""
        out = []
        for record, crop in zip(self.patches, self.crops):
            top, left, bottom, right = record["box"]
            ct, cl = record["clipped_box"][:2]
            tile = np.full((bottom - top, right - left, crop.shape[2]), fill, np.uint8)
            tile[ct - top: ct - top + crop.shape[0], cl - left: cl - left + crop.shape[1]] = crop
            out.append(rgb(tile))
        return out

    def picture(self):
        tiles = self.padded()
        factor = upscale_factor(max(tiles[0].shape[:2]), 64)
        labels = [f"{r['image']}" for r in self.patches]
        return grid([enlarge(t, factor) for t in tiles], pad=2, labels=labels)

    def figures(self):
        if not self.patches:
            return {}
        values = [r["activation"] for r in self.patches]
        size = "whole image" if self.field.whole_image else f"{self.field.size[0]}x{self.field.size[1]} px"
        beyond = "; grey: where the field leaves the image" if any(r["clipped"] for r in self.patches) else ""
        title = (f"{self.layer}, channel {self.channel}: top {len(values)} patches, labelled by image index\n"
                 f"({size} receptive field{beyond}; activation {values[-1]:.3g}..{values[0]:.3g})")
        return {f"{self.layer}_{self.channel}": figure([Panel(title, image=self.picture())], size="native")}

    def pictures(self):
        return {f"{self.layer}_{self.channel}_grid": self.picture()} if self.patches else {}


@technique("patches", "Maximally activating patches", "Girshick et al. 2014", [
    Option("layer", "layer", None, "layer to search (default: the last pooling layer, e.g. pool5 as in Girshick et al.)"),
    Option("channel", "int", 0, "channel (unit) of that layer", low=0),
    Option("k", "int", 9, "how many patches (the toolbox's 9)", low=1, high=10_000),
    Option("per_image", "int", 1, "at most this many patches per image; 0 = no limit", low=0),
    Option("batch_size", "int", None, "images per forward pass (default: as many as fit 512 MB of activations, "
                                      "at most 64)", low=1),
], inputs="dataset")
def maximally_activating_patches(model, dataset, *, layer, channel, k, per_image, batch_size):
    """The top-``k`` units of ``channel`` in ``layer`` over a dataset (a
    :class:`~methods.lib.datasets.Dataset`, images, or a folder path, streamed), with their image
    patches, as a :class:`PatchesResult`."""
    dataset = as_dataset(model, dataset)
    images = dataset.images
    layer = layer or last_pooling(model)
    model.check_layers([layer])
    note = None
    if model.sequential:
        field = receptive_field(model, layer, images.shape[1:3])
    else:  # the layers' order is not the forward's: no receptive field to cut out
        field = ReceptiveField(whole_image=True)
        note = f"{model.describe()} does not run its layers in sequence, so patches are whole images"
    first = layer_activations(model, model.preprocessing.normalize(images[:1]), layer)
    channels, positions = first.shape[1], int(np.prod(first.shape[2:]))
    if channel >= channels:
        raise ValueError(f"channel {channel} out of range: layer {layer!r} has {channels} channels "
                         f"(0..{channels - 1})")
    m = min(per_image or k, k, positions)
    every = isinstance(images, FolderImages) and channels * m <= ALL_CHANNELS_UP_TO
    work = ChannelPeaks(layer, m, None if every else [channel])
    batch_size = batch_size or batch_size_for(model, images, layer)
    store, = scan(model, dataset, [work], batch_size, f"patches {layer}:{channel}")
    column = channel if every else 0
    cols = first.shape[3] if first.ndim == 4 else 1
    top = TopK(k)
    for start, values, where in store.chunks("values", "positions"):
        # one key per (image, position), increasing in (image, row, col): ties go to the earliest
        top.push(-values[:, column].astype(np.float64), (start + np.arange(len(where)))[:, None] * positions
                 + where[:, column])
    values, (index, place) = -top.keys[0], np.divmod(top.index[0], positions)
    keys = np.stack([index, place // cols, place % cols], 1)
    height, width = images.shape[1:3]
    records, crops = [], []
    for value, (index, row, col) in zip(values, keys):
        box = (0, 0, height, width) if field.whole_image else field.box(int(row), int(col))
        clipped_box = (max(box[0], 0), max(box[1], 0), min(box[2], height), min(box[3], width))
        label = None if dataset.labels is None else dataset.names[int(dataset.labels[index])]
        records.append(dict(activation=float(value), image=int(index), unit=(int(row), int(col)), box=box,
                            clipped_box=clipped_box, clipped=clipped_box != box, label=label,
                            source=dataset.sources[index]))
        crops.append(images[index, clipped_box[0]: clipped_box[2], clipped_box[1]: clipped_box[3]].copy())
    result = PatchesResult(layer, channel, records, crops, field, dataset.names, dataset_size=len(images),
                           **({"note": note} if note else {}))
    result.params.update(layer=layer, batch_size=batch_size)
    return result
