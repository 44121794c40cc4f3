"""One declaration of each technique's options, from which everything else is made.

A technique states its options once, with the paper's default, the valid range and a help
text, and decorates its function::

    @technique("occlusion", "Occlusion sensitivity maps", "Zeiler & Fergus 2014", inputs="images",
               options=[Option("size", "int", None, "occluder side in pixels (default: image side // 7)", low=1),
                        Option("fill", "choice", "zeros", "what covers the square", choices=FILLS)])
    def occlusion(model, x, *, size, fill):
        ...

From the declaration come: the function's keyword defaults (``help(occlusion)`` and
``inspect.signature`` show them), the checks on every call (a bad value is a ValueError naming
the option and its valid range, before any work), the ``--size`` / ``--fill`` arguments of
``python -m methods occlusion``, the ``params`` saved with every result, and what the gallery runs.

The decorated function also takes care of what every technique needs first: the model goes
through :func:`minigrad.models.as_model` (any ``nn.Module`` works), and for ``inputs="images"``
the batch is checked against the model. A technique that works on an image itself, with no
network (HOG inversion, Efros-Leung texture synthesis), declares ``inputs="image"`` and is
written ``def f(image="sample:NAME", *, ...)``: the default names the image the command line and
the gallery use, and the image (a file, ``sample:NAME`` or an array) arrives checked by
:func:`methods.lib.inputs.check_image`.
"""

import functools
import inspect
import math

import numpy as np

__all__ = ["KINDS", "Option", "Technique", "TECHNIQUES", "technique"]

#: What an option can hold; each kind has a check and a command-line parser.
KINDS = ("int", "float", "bool", "choice", "str", "layer", "unit", "target", "ints", "path", "image")

#: name -> :class:`Technique`, in the order the modules register them.
TECHNIQUES = {}


def _is_int(value):
    return isinstance(value, (int, np.integer)) and not isinstance(value, (bool, np.bool_))


class Option:
    """One option: ``name`` (a Python identifier; ``--name-with-dashes`` on the command line),
    ``kind`` (one of :data:`KINDS`), ``default`` (the paper's, or None with its meaning in
    ``help``), ``help``; ``low`` / ``high`` inclusive bounds for numbers (``open_low`` makes
    the lower bound exclusive), ``choices`` for "choice"; ``gallery`` the value the gallery uses
    when it differs from the default (to stay fast)."""

    def __init__(self, name, kind, default, help, low=None, high=None, open_low=False, choices=None,
                 gallery=None):
        if kind not in KINDS:
            raise ValueError(f"unknown option kind {kind!r}")
        self.name, self.kind, self.default, self.help = name, kind, default, help
        self.low, self.high, self.open_low, self.choices, self.gallery = low, high, open_low, choices, gallery
        if default is not None:
            self.check(default)

    @property
    def flag(self):
        return "--" + self.name.replace("_", "-")

    def range_text(self):
        """The valid values, in words."""
        if self.kind == "choice":
            return "one of " + ", ".join(map(str, self.choices))
        if self.kind in ("int", "float", "ints"):
            what = "an integer" if self.kind in ("int", "ints") else "a number"
            if self.low is not None and self.high is not None:
                return f"{what} from {self.low} to {self.high}" + (" (exclusive of the lower bound)" if self.open_low else "")
            if self.low is not None:
                return f"{what} {'>' if self.open_low else '>='} {self.low}"
            if self.high is not None:
                return f"{what} <= {self.high}"
            return what
        return {"bool": "True or False", "str": "a string", "layer": "a layer name of the model",
                "unit": "a channel c or a neuron (c, i, j) of non-negative integers",
                "target": "a class index >= 0 or a class name (or one per image)",
                "path": "a file or folder path",
                "image": "an image: a file, sample:NAME, or an (H, W) or (H, W, 3) array"}[self.kind]

    def _bad(self, value):
        return ValueError(f"{self.name} must be {self.range_text()}" + ("" if self.default is not None else " or None")
                          + f", got {value!r}")

    def check(self, value):
        """``value`` if it is valid for this option (numbers normalised to int/float), else ValueError."""
        if value is None:
            if self.default is None:
                return None
            raise self._bad(value)
        kind = self.kind
        if kind == "bool":
            if isinstance(value, (bool, np.bool_)):
                return bool(value)
            raise self._bad(value)
        if kind == "int":
            if not _is_int(value):
                raise self._bad(value)
            return self._in_range(int(value))
        if kind == "float":
            if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, float, np.integer, np.floating)) \
                    or not math.isfinite(value):
                raise self._bad(value)
            return self._in_range(float(value))
        if kind == "ints":
            values = [value] if _is_int(value) else list(value) if isinstance(value, (list, tuple, np.ndarray)) else None
            if not values or not all(_is_int(v) for v in values):
                raise self._bad(value)
            return [self._in_range(int(v), value) for v in values]
        if kind == "choice":
            if value not in self.choices:
                raise self._bad(value)
            return value
        if kind in ("str", "layer", "path"):
            if not isinstance(value, str) or not value:
                raise self._bad(value)
            return value
        if kind == "image":
            if (isinstance(value, str) and value) or np.ndim(value) in (2, 3) and not isinstance(value, str):
                return value
            raise self._bad(value)
        if kind == "unit":
            if _is_int(value) and value >= 0:
                return int(value)
            if isinstance(value, (tuple, list)) and len(value) in (1, 3) and all(_is_int(v) and v >= 0 for v in value):
                return tuple(int(v) for v in value) if len(value) == 3 else int(value[0])
            raise self._bad(value)
        if kind == "target":
            if isinstance(value, str) and value:
                return value
            if _is_int(value) and value >= 0:
                return int(value)
            if isinstance(value, (list, tuple, np.ndarray)) and len(value) and all(
                    (_is_int(v) and v >= 0) or (isinstance(v, str) and v) for v in value):
                return [v if isinstance(v, str) else int(v) for v in value]
            raise self._bad(value)
        raise AssertionError(kind)

    def _in_range(self, number, shown=None):
        low_ok = self.low is None or (number > self.low if self.open_low else number >= self.low)
        if not low_ok or (self.high is not None and number > self.high):
            raise self._bad(number if shown is None else shown)
        return number

    # ---- the command line ---------------------------------------------------------------------
    def parse(self, text):
        """The value written on the command line as ``text`` (before :meth:`check`)."""
        kind = self.kind
        try:
            if kind == "int":
                return int(text)
            if kind == "float":
                return float(text)
            if kind == "ints":
                return [int(t) for t in text.replace(",", " ").split()]
            if kind == "unit":
                parts = [int(t) for t in text.split(",")]
                return parts[0] if len(parts) == 1 else tuple(parts)
            if kind == "target":
                parts = [t.strip() for t in text.split(",")]
                parts = [int(t) if t.lstrip("-").isdigit() else t for t in parts]
                return parts[0] if len(parts) == 1 else parts
        except ValueError:
            raise ValueError(f"{self.flag} must be {self.range_text()}, got {text!r}") from None
        return text

    def add_to(self, parser):
        """Add ``--name`` to an argparse parser (checked when parsed, with the option's message)."""
        import argparse

        shown = "none" if self.default is None else self.default
        text = f"{self.help} (default: {shown})"
        if self.kind == "bool":
            parser.add_argument(self.flag, dest=self.name, action=argparse.BooleanOptionalAction,
                                default=self.default, help=text)
            return

        def typed(raw, option=self):
            try:
                return option.check(option.parse(raw))
            except ValueError as error:
                message = str(error).replace(" or None,", ",").replace(f"{option.flag} must", f"{option.name} must")
                raise argparse.ArgumentTypeError(message) from None

        typed.__name__ = self.kind
        metavar = {"choice": "{" + ",".join(map(str, self.choices or ())) + "}"}.get(self.kind, self.name.upper())
        parser.add_argument(self.flag, dest=self.name, type=typed, default=self.default, help=text, metavar=metavar)


class Technique:
    """A registered technique: its name, title, paper, options, what it takes (``inputs``:
    "images" -- a preprocessed batch; "dataset" -- a :class:`~methods.lib.datasets.Dataset`;
    "model" -- nothing more; "image" -- one image and no model, by default ``image``), and the
    decorated function."""

    def __init__(self, name, title, paper, options, inputs, function, queries=False, image=None):
        self.name, self.title, self.paper, self.inputs, self.function = name, title, paper, inputs, function
        self.options = list(options)
        self.queries = queries  # a dataset technique that also takes query images (neighbours)
        self.image = image  # the default image of an inputs="image" technique

    def defaults(self):
        return {o.name: o.default for o in self.options}

    def gallery_values(self):
        """The option values the gallery runs with."""
        return {o.name: (o.gallery if o.gallery is not None else o.default) for o in self.options}

    def check(self, values):
        """All option values, defaults filled in, each checked; unknown names are a TypeError."""
        known = {o.name: o for o in self.options}
        unknown = sorted(set(values) - set(known))
        if unknown:
            raise TypeError(f"{self.name}() got unknown option(s) {', '.join(unknown)}; "
                            f"its options are: {', '.join(known)}")
        return {name: option.check(values.get(name, option.default)) for name, option in known.items()}


def technique(name, title, paper, options, inputs="images"):
    """Register the decorated function as technique ``name`` with these :class:`Option` s.

    The function is written ``def f(model, x, *, opt1, opt2)`` (``f(model, dataset, ..., *, ...)``
    for ``inputs="dataset"``, ``f(model, *, ...)`` for "model", ``f(image="sample:NAME", *, ...)``
    for "image") with keyword-only options and no defaults: the defaults come from the
    declaration. The returned function checks every option, adapts the model and the input batch
    (or checks the image), and sets ``result.params`` to the values it ran with.
    """
    if inputs not in ("images", "dataset", "model", "image"):
        raise ValueError(f"inputs must be 'images', 'dataset', 'model' or 'image', got {inputs!r}")

    def decorate(function):
        signature = inspect.signature(function)
        keyword = [p for p in signature.parameters.values() if p.kind is p.KEYWORD_ONLY]
        declared = [o.name for o in options]
        if [p.name for p in keyword] != declared:
            raise TypeError(f"{function.__name__}: keyword-only parameters {[p.name for p in keyword]} "
                            f"must be the declared options {declared}, in order")
        positional = [p for p in signature.parameters.values() if p.kind is p.POSITIONAL_OR_KEYWORD]
        image = positional[0].default if inputs == "image" and positional else None
        if inputs == "image" and (len(positional) != 1 or not isinstance(image, str)):
            raise TypeError(f"{function.__name__}: an inputs='image' technique takes one image parameter whose "
                            "default names an image (a file or sample:NAME), then its options")
        spec = Technique(name, title, paper, options, inputs, None, queries=inputs == "dataset" and len(positional) > 2,
                         image=image)
        function.__kwdefaults__ = spec.defaults()

        @functools.wraps(function)
        def run_on_image(*args, **values):
            from methods.lib.inputs import check_image

            if len(args) > 1 or (args and positional[0].name in values):
                raise TypeError(f"{name}() takes one image, then options by name")
            source = args[0] if args else values.pop(positional[0].name, image)
            values = spec.check(values)
            result = function(check_image(source, positional[0].name), **values)
            result.technique, result.params = name, {**values, **result.params}
            return result

        @functools.wraps(function)
        def run(model, *args, **values):
            from methods.lib.inputs import as_model, check_batch

            values = spec.check(values)
            model = as_model(model, args[0] if inputs == "images" and args else None)
            if inputs == "images":
                if len(args) != 1:
                    raise TypeError(f"{name}() takes the model and one image batch, then options by name")
                args = (check_batch(model, args[0]),)
            elif (inputs == "dataset" and not args) or (inputs == "model" and args):
                raise TypeError(f"{name}() takes the model{' and a dataset' if inputs == 'dataset' else ''}, "
                                "then options by name")
            result = function(model, *args, **values)
            result.technique, result.params = name, {**values, **result.params}
            return result

        if inputs == "image":
            run = run_on_image
        run.__signature__ = signature.replace(parameters=[
            p.replace(default=spec.defaults()[p.name]) if p.kind is p.KEYWORD_ONLY else p
            for p in signature.parameters.values()])
        spec.function = run
        run.technique = spec
        TECHNIQUES[name] = spec
        return run

    return decorate
