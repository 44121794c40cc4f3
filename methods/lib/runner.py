"""Running a registered technique from names alone (a model name, image specs, a dataset spec):
what the command line and the gallery both do, written once."""

import time

from methods.lib.datasets import default_image, load_dataset, load_images

__all__ = ["run_technique"]


def run_technique(spec, model, values, images=None, dataset="sample", limit=None, cache=None):
    """Run technique ``spec`` (a :class:`~methods.lib.options.Technique`) on ``model`` with option
    ``values``. ``images``: image specs (files, ``sample:NAME``, ``sample:INDEX``; default: the
    model's :func:`~methods.lib.datasets.default_image`, or the technique's own) for techniques
    that take images, or the queries of one that takes a dataset; ``dataset`` / ``limit`` for
    dataset techniques, and ``cache`` for a folder's scans
    (:func:`~methods.lib.datasets.load_dataset`). A technique on one image and no network
    (``inputs="image"``) takes the first spec (default: its own) and ignores ``model``.
    Returns (result, notes): ``result.inputs`` records what it ran on, ``notes`` the resizes made."""
    start = time.perf_counter()
    notes = []
    if spec.inputs == "images":
        images = images or [default_image(model)]
        x, notes = load_images(model, images)
        result = spec.function(model, x, **values)
        result.inputs = {"images": list(images)}
    elif spec.inputs == "pictures":
        images = images or [spec.image or default_image(model)]
        if len(images) != 1:
            raise ValueError(f"{spec.name} takes one image, got {len(images)}")
        result = spec.function(model, images[0], **values)
        result.inputs = {"images": list(images)}
    elif spec.inputs == "dataset":
        data = load_dataset(model, dataset, limit, cache)
        args = [data]
        if images and spec.queries:
            x, notes = load_images(model, images)
            args.append(x)
        result = spec.function(model, *args, **values)
        result.inputs = {"dataset": dataset, "limit": limit, "images": len(data.images),
                         "queries": list(images) if images and spec.queries else None}
    elif spec.inputs == "image":  # no network: the model is not used
        if images and len(images) > 1:
            raise ValueError(f"{spec.name} works on one image, got {len(images)}")
        image = images[0] if images else spec.image
        result = spec.function(image, **values)
        result.inputs = {"image": image}
    elif spec.inputs == "model":
        result = spec.function(model, **values)
    else:
        result = spec.function(**values)
    result.summary.setdefault("seconds", round(time.perf_counter() - start, 3))
    return result, notes
