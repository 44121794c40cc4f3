"""Layer tables of the architectures whose checkpoints ``weights`` knows, as plain data.

One table per architecture lists every layer of torchvision's model in forward order: where it
sits in torchvision's ``state_dict`` (``features.N`` / ``avgpool`` / ``classifier.N``), what it
is, the name the papers give it (``conv1_1``, ``relu1_1``, ``pool1`` ... ``fc8`` for VGG;
``conv1`` ... ``fc8`` for AlexNet) and its hyper-parameters. Two consumers read the same table:

* the converter (``python -m weights convert``) checks a checkpoint's keys and shapes against
  :func:`expected_state` without needing minigrad, and
* ``minigrad.models`` builds the network from :func:`layers`, so the model and the check can
  never disagree.

VGG configurations A/B/D/E are Simonyan & Zisserman (2015), table 1; AlexNet is torchvision's
single-GPU variant of Krizhevsky et al. (2012) (64/192/384/256/256 filters, no LRN).
"""

import math

from weights.errors import CheckpointError
from weights.untrusted import escaped, shown, shown_shape

__all__ = [
    "ARCHS", "Layer", "layers", "expected_state", "check_state", "describe_mismatch", "guess_arch", "num_parameters",
]

# Filter counts per conv, "M" for a 2x2/2 max-pool.
_VGG_CFGS = {
    "vgg11": [64, "M", 128, "M", 256, 256, "M", 512, 512, "M", 512, 512, "M"],
    "vgg13": [64, 64, "M", 128, 128, "M", 256, 256, "M", 512, 512, "M", 512, 512, "M"],
    "vgg16": [64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M", 512, 512, 512, "M"],
    "vgg19": [64, 64, "M", 128, 128, "M", 256, 256, 256, 256, "M", 512, 512, 512, 512, "M",
              512, 512, 512, 512, "M"],
}

#: Every architecture name this module (and minigrad.models) knows.
ARCHS = ("alexnet",) + tuple(f"{v}{bn}" for v in _VGG_CFGS for bn in ("", "_bn"))


class Layer:
    """One layer: ``key`` its torchvision prefix (``"features.0"``, ``"avgpool"``,
    ``"classifier.6"``), ``kind`` one of conv/bn/relu/maxpool/adaptive_avgpool/flatten/dropout/
    linear, ``name`` its paper-style name, ``params`` a dict of hyper-parameters."""

    __slots__ = ("key", "kind", "name", "params")

    def __init__(self, key, kind, name, **params):
        self.key, self.kind, self.name, self.params = key, kind, name, params

    def param_shapes(self):
        """``{suffix: shape}`` of the tensors this layer owns in a state_dict."""
        p = self.params
        if self.kind == "conv":
            return {"weight": (p["out_channels"], p["in_channels"]) + p["kernel_size"], "bias": (p["out_channels"],)}
        if self.kind == "linear":
            return {"weight": (p["out_features"], p["in_features"]), "bias": (p["out_features"],)}
        if self.kind == "bn":
            c = (p["num_features"],)
            return {"weight": c, "bias": c, "running_mean": c, "running_var": c}
        return {}

    def __repr__(self):
        return f"Layer({self.key!r}, {self.kind!r}, {self.name!r}, {self.params})"


def _vgg(arch, num_classes):
    base, bn = arch.removesuffix("_bn"), arch.endswith("_bn")
    out, idx, block, sub, cin = [], 0, 1, 1, 3
    for v in _VGG_CFGS[base]:
        if v == "M":
            out.append(Layer(f"features.{idx}", "maxpool", f"pool{block}", kernel_size=(2, 2), stride=(2, 2), padding=(0, 0)))
            idx, block, sub = idx + 1, block + 1, 1
            continue
        tag = f"{block}_{sub}"
        out.append(Layer(f"features.{idx}", "conv", f"conv{tag}", in_channels=cin, out_channels=v,
                         kernel_size=(3, 3), stride=(1, 1), padding=(1, 1)))
        idx += 1
        if bn:
            out.append(Layer(f"features.{idx}", "bn", f"bn{tag}", num_features=v, eps=1e-5, momentum=0.1))
            idx += 1
        out.append(Layer(f"features.{idx}", "relu", f"relu{tag}"))
        idx, sub, cin = idx + 1, sub + 1, v
    out.append(Layer("avgpool", "adaptive_avgpool", "avgpool", output_size=(7, 7)))
    out.append(Layer("flatten", "flatten", "flatten"))
    out += [
        Layer("classifier.0", "linear", "fc6", in_features=512 * 7 * 7, out_features=4096),
        Layer("classifier.1", "relu", "relu6"),
        Layer("classifier.2", "dropout", "drop6", p=0.5),
        Layer("classifier.3", "linear", "fc7", in_features=4096, out_features=4096),
        Layer("classifier.4", "relu", "relu7"),
        Layer("classifier.5", "dropout", "drop7", p=0.5),
        Layer("classifier.6", "linear", "fc8", in_features=4096, out_features=num_classes),
    ]
    return out


def _alexnet(num_classes):
    def conv(i, n, cin, cout, k, s, p):
        return Layer(f"features.{i}", "conv", f"conv{n}", in_channels=cin, out_channels=cout,
                     kernel_size=(k, k), stride=(s, s), padding=(p, p))

    def pool(i, n):
        return Layer(f"features.{i}", "maxpool", f"pool{n}", kernel_size=(3, 3), stride=(2, 2), padding=(0, 0))

    return [
        conv(0, 1, 3, 64, 11, 4, 2), Layer("features.1", "relu", "relu1"), pool(2, 1),
        conv(3, 2, 64, 192, 5, 1, 2), Layer("features.4", "relu", "relu2"), pool(5, 2),
        conv(6, 3, 192, 384, 3, 1, 1), Layer("features.7", "relu", "relu3"),
        conv(8, 4, 384, 256, 3, 1, 1), Layer("features.9", "relu", "relu4"),
        conv(10, 5, 256, 256, 3, 1, 1), Layer("features.11", "relu", "relu5"), pool(12, 5),
        Layer("avgpool", "adaptive_avgpool", "avgpool", output_size=(6, 6)),
        Layer("flatten", "flatten", "flatten"),
        # torchvision drops out the input of each hidden fc layer; named after what they follow
        Layer("classifier.0", "dropout", "drop5", p=0.5),
        Layer("classifier.1", "linear", "fc6", in_features=256 * 6 * 6, out_features=4096),
        Layer("classifier.2", "relu", "relu6"),
        Layer("classifier.3", "dropout", "drop6", p=0.5),
        Layer("classifier.4", "linear", "fc7", in_features=4096, out_features=4096),
        Layer("classifier.5", "relu", "relu7"),
        Layer("classifier.6", "linear", "fc8", in_features=4096, out_features=num_classes),
    ]


def layers(arch, num_classes=1000):
    """The layer table of ``arch`` (see :data:`ARCHS`) in forward order."""
    if arch == "alexnet":
        return _alexnet(num_classes)
    if arch in ARCHS:
        return _vgg(arch, num_classes)
    raise CheckpointError(f"unknown architecture {shown(arch)}; known: {', '.join(ARCHS)}")


def expected_state(arch, num_classes=1000):
    """``{state_dict key: shape}`` that torchvision's ``arch`` has (``num_batches_tracked``
    buffers of BatchNorm layers excluded: they are optional and ignored)."""
    return {
        f"{layer.key}.{suffix}": shape
        for layer in layers(arch, num_classes)
        for suffix, shape in layer.param_shapes().items()
    }


def _is_optional(key):
    return key.endswith(".num_batches_tracked")


def check_state(arch, shapes, num_classes=None):
    """Compare ``shapes`` (``{key: shape}``) with ``arch``; return ``(missing, unexpected,
    mismatched)`` lists. ``num_classes=None`` accepts any size of the last layer."""
    if num_classes is None:
        num_classes = _num_classes(shapes) or 1000
    want = expected_state(arch, num_classes)
    missing = [k for k in want if k not in shapes]
    unexpected = [k for k in shapes if k not in want and not _is_optional(k)]
    mismatched = [(k, tuple(shapes[k]), want[k]) for k in want if k in shapes and tuple(shapes[k]) != want[k]]
    return missing, unexpected, mismatched


def _num_classes(shapes):
    s = shapes.get("classifier.6.weight")
    return int(s[0]) if s is not None and len(s) == 2 else None


def describe_mismatch(arch, missing, unexpected, mismatched, limit=40, width=300):
    """A readable multi-line account of why a checkpoint does not fit ``arch``. Keys come from
    the file, so each is shown escaped, and no line grows past about ``width`` characters."""
    lines = [f"the checkpoint's keys do not fit {arch}:"]
    for title, items in (("missing", missing), ("unexpected", unexpected)):
        if items:
            keys, used = [], 0
            for key in items[:limit]:
                if used > width:
                    break
                keys.append(escaped(key, 60))
                used += len(keys[-1]) + 2
            rest = len(items) - len(keys)
            lines.append(f"  {len(items)} {title} key(s): " + ", ".join(keys) + (f" ... ({rest} more)" if rest else ""))
    for k, got, want in mismatched[:limit]:
        lines.append(f"  {escaped(k, 60)}: shape {shown_shape(got)} in the file, {list(want)} expected")
    if len(mismatched) > limit:
        lines.append(f"  ... and {len(mismatched) - limit} more shape mismatches")
    return "\n".join(lines)


def guess_arch(shapes):
    """The architecture whose keys and shapes ``shapes`` matches exactly, or None."""
    for arch in ARCHS:
        if not any(check_state(arch, shapes)):
            return arch
    return None


def num_parameters(arch, num_classes=1000):
    """Number of learnable parameters (running BatchNorm statistics excluded)."""
    return sum(
        math.prod(shape)
        for key, shape in expected_state(arch, num_classes).items()
        if not key.endswith(("running_mean", "running_var"))
    )
