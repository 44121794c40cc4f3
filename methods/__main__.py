"""``python -m methods``: list the techniques, or run one on any image and model.

    python -m methods                                   # the list, with what is implemented
    python -m methods saliency --model fashion-vgg --image sample:0 --out out/
    python -m methods gallery --out gallery/           # every technique, into gallery/index.html

A technique module ``methods/<name>.py`` joins the CLI by defining
``add_cli_arguments(parser)`` (its own options, with the papers' defaults) and
``run_cli(args, model, x) -> Result``, where ``x`` is the preprocessed NCHW batch. The
options every technique shares (--model, --image, --out, --seed, --force) are added here.
"""

import argparse
import importlib
import importlib.util
import os
import sys

from methods import TECHNIQUES


def module_name(technique):
    return f"methods.{technique.replace('-', '_')}"


def implemented(technique):
    spec = importlib.util.find_spec(module_name(technique))
    return spec is not None and hasattr(importlib.import_module(module_name(technique)), "run_cli")


def load_images(model, specs):
    """Images named on the command line: files, ``sample:NAME`` (shipped images) or ``sample:INDEX``."""
    from methods import imaging

    images = []
    for spec in specs:
        if spec.startswith("sample:"):
            from methods import data

            key = spec.split(":", 1)[1]
            images.append(data.fashion_sample()[0][int(key)] if key.isdigit() else data.sample_image(key))
        else:
            grayscale = getattr(model, "input_channels", 3) == 1
            images.append(imaging.load_image(spec, grayscale=grayscale))
    return model.preprocess(images)


def build_parser():
    parser = argparse.ArgumentParser(prog="python -m methods", description="Backprop-to-image techniques on minigrad models.")
    commands = parser.add_subparsers(dest="technique", metavar="TECHNIQUE")
    for name, title, paper in TECHNIQUES:
        if not implemented(name):
            continue
        sub = commands.add_parser(name, help=f"{title} ({paper})", description=f"{title} ({paper}).")
        sub.add_argument("--model", default="fashion-vgg", help="model name for minigrad.models.load (default: fashion-vgg)")
        sub.add_argument("--image", action="append", default=None,
                         help="image file, sample:NAME or sample:INDEX; repeat for a batch (default: sample:0)")
        sub.add_argument("--out", default="out", help="folder for the PNG and JSON results (default: out)")
        sub.add_argument("--seed", type=int, default=0, help="random seed (default: 0)")
        sub.add_argument("--force", action="store_true", help="replace existing result files")
        importlib.import_module(module_name(name)).add_cli_arguments(sub)
    gallery = commands.add_parser("gallery", help="render every implemented technique into OUT/index.html")
    gallery.add_argument("--out", default="gallery", help="output folder (default: gallery)")
    gallery.add_argument("--model", default="fashion-vgg", help="model to render with (default: fashion-vgg)")
    gallery.add_argument("--technique", dest="technique_filter", action="append", default=None,
                         help="render only this technique (repeatable)")
    gallery.add_argument("--force", action="store_true", help="replace an existing gallery")
    return parser


def list_techniques():
    width = max(len(name) for name, _, _ in TECHNIQUES)
    for name, title, paper in TECHNIQUES:
        status = "ready" if implemented(name) else "not yet"
        print(f"{name:<{width}}  {status:<8} {title} ({paper})")


def main(argv=None):
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.technique is None:
        list_techniques()
        return 0
    import minigrad
    from minigrad import models

    try:
        if args.technique == "gallery":
            from methods.gallery import render

            entries = render(parser, args.out, model_name=args.model, techniques=args.technique_filter, force=args.force)
            print(f"{len(entries)} techniques rendered into {os.path.join(args.out, 'index.html')}")
            return 0
        minigrad.manual_seed(args.seed)
        model = models.load(args.model)
        x = load_images(model, args.image or ["sample:0"])
        result = importlib.import_module(module_name(args.technique)).run_cli(args, model, x)
        for path in result.save(args.out, overwrite=args.force):
            print(path)
    except (ValueError, KeyError, FileNotFoundError, FileExistsError, ImportError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
