"""The backprop inspector: where the three ReLU rules part ways, layer by layer.

Saliency (Simonyan et al. 2014), the deconvnet (Zeiler & Fergus 2014) and guided backpropagation
(Springenberg et al. 2015) run the same backward pass and differ only at the ReLUs: the true
gradient passes where the ReLU's *input* was positive, the deconvnet where the *signal coming
down* is positive, guided backpropagation where both are. So for one image and one quantity (a
class score or a unit) the three gradients are equal from the quantity down to the first ReLU
they cross, and part there. The inspector shows, at the output of every layer and at the image,
each rule's gradient norm and its map (the norm over channels at each position; a fully
connected layer's units laid out as a square), and the cosine similarity of each pair of rules:
1 where they agree, lower where they have parted.

One forward pass serves the three backward passes (:func:`methods.lib.gradients.layer_gradients`).
"""

import numpy as np

from methods.lib.figures import curves
from methods.lib.gradients import RULES, layer_gradients
from methods.lib.images import colorize, grid, require, tile_vector
from methods.lib.inputs import check_batch
from methods.lib.options import Option
from methods.lib.result import Result

__all__ = ["OPTIONS", "PAIRS", "InspectorResult", "inspect", "layer_map"]

#: The quantity explained, declared as the techniques declare theirs.
OPTIONS = [
    Option("target", "target", None, "class index or name whose score is followed (default: the top class)"),
    Option("layer", "layer", None, "follow a unit of this layer instead of a class score"),
    Option("unit", "unit", None, "with layer: a channel c or a neuron c,i,j (default: the most active neuron)"),
]

#: The pairs of rules compared.
PAIRS = tuple((a, b) for i, a in enumerate(RULES) for b in RULES[i + 1:])

#: Cosine similarity above which two rules' gradients count as equal.
AGREE = 1 - 1e-5

TILE = 64
CMAP = "magma"


def layer_map(gradient):
    """One picture of a layer's gradient for one image: the L2 norm over channels at each
    position (C, h, w) -> (h, w), or a fully connected layer's |gradient| as a square tile."""
    g = np.asarray(gradient)
    if g.ndim == 3:
        return np.sqrt(np.square(g).sum(axis=0))
    return tile_vector(np.abs(g).ravel())


def _norm(a):
    # NumPy's pairwise sums, not BLAS: OpenBLAS's threads make a dot slow on a busy machine
    return float(np.sqrt(np.sum(np.square(a))))


def _cosine(a, b):
    norms = _norm(a) * _norm(b)
    return float(np.sum(a * b) / norms) if norms > 0 else None


class InspectorResult(Result):
    """``rows``: one dict per layer from the quantity down to the image: ``name``, ``shape`` (per
    image), ``norms`` {rule: L2 norm}, ``cosine`` {"a/b": cosine similarity or None when one is 0},
    ``maps`` {rule: 2-D map (:func:`layer_map`)}; ``parting``: the first layer, going down, where
    the rules differ (None if they never do); ``what``: the quantity in words."""

    technique = "backprop-inspector"

    def __init__(self, rows, what, parting):
        super().__init__(quantity=what, parting_layer=parting,
                         layers=[{k: row[k] for k in ("name", "shape", "norms", "cosine")} for row in rows])
        self.rows, self.what, self.parting = rows, what, parting

    def figures(self):
        names = [row["name"] for row in self.rows]
        norms = {rule: [row["norms"][rule] for row in self.rows] for rule in RULES}
        cosines = {f"{a} vs {b}": [np.nan if row["cosine"][f"{a}/{b}"] is None else row["cosine"][f"{a}/{b}"]
                                   for row in self.rows] for a, b in PAIRS}
        parted = f"; they part at {self.parting}" if self.parting else "; they never part"
        size = (max(5.0, 0.18 * len(names) + 2), 3.6)
        return {"norms": curves(norms, title=f"gradient norm of {self.what}, from it down to the image",
                                xlabel="output of layer", ylabel="L2 norm", log=True, size=size, ticks=names),
                "agreement": curves(cosines, title=f"agreement of the ReLU rules{parted}", xlabel="output of layer",
                                    ylabel="cosine similarity", size=size, ticks=names)}

    @staticmethod
    def colour(values):
        """A map coloured from 0 to its own largest value (its norm says how large that is)."""
        return colorize(np.nan_to_num(values), CMAP, 0.0, float(np.nanmax(values)) or 1.0)

    def pictures(self):
        Image = require("PIL.Image", "drawing the inspector's maps")
        tiles, labels = [], []
        for row in self.rows:
            for rule in RULES:
                colours = Image.fromarray(self.colour(row["maps"][rule]))
                tiles.append(np.asarray(colours.resize((TILE, TILE), Image.NEAREST)))
                labels.append(f"{row['name']} {rule}")
        return {"maps": grid(tiles, columns=len(RULES), pad=2, labels=labels)}


def inspect(model, x, *, target=None, layer=None, unit=None):
    """The backprop inspector for the one image ``x`` (1, C, H, W): the gradient of ``target``'s
    class score (or ``unit`` of ``layer``) at every layer under each ReLU rule, as an
    :class:`InspectorResult`."""
    values = {o.name: o.check(v) for o, v in zip(OPTIONS, (target, layer, unit))}
    x = check_batch(model, x)
    if len(x) != 1:
        raise ValueError(f"the inspector takes one image, got a batch of {len(x)}")
    found = layer_gradients(model, x, RULES, **values)
    names = list(reversed(found.layers)) + ["image"]
    rows = []
    for name in names:
        grads = {rule: (found.image[rule] if name == "image" else found.gradients[rule].get(name)) for rule in RULES}
        if any(g is None for g in grads.values()):
            continue  # a layer off the path to the quantity
        grads = {rule: g[0] for rule, g in grads.items()}
        rows.append({"name": name, "shape": list(grads[RULES[0]].shape),
                     "norms": {rule: _norm(g) for rule, g in grads.items()},
                     "cosine": {f"{a}/{b}": _cosine(grads[a], grads[b]) for a, b in PAIRS},
                     "maps": {rule: layer_map(g) for rule, g in grads.items()}})
    parting = next((row["name"] for row in rows if any(c is None or c < AGREE for c in row["cosine"].values())
                    and any(n > 0 for n in row["norms"].values())), None)
    if layer is None:
        what = f"the score of {model.label(found.targets[0])} ({int(found.targets[0])})"
    else:
        what = f"{layer} {'most active neuron' if unit is None else f'unit {unit}'}"
    result = InspectorResult(rows, what, parting)
    result.params = {**values, "rules": list(RULES)}
    return result
