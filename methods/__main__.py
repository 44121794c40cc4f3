"""``python -m methods``: list the techniques, or run one on any image and model.

    python -m methods                                   # the list, with what is implemented
    python -m methods saliency --model fashion-vgg --image sample:3 --out out/saliency
    python -m methods grad-cam --model vgg16-random --image cat.jpg
    python -m methods gallery --out gallery/ [--model vgg16-random]
    python -m methods explore [--model NAME] [--port 8000]   # the explorer, in the browser
    python -m methods neighbours --model vgg16 --dataset val/ --workers 2     # the scan on Dask
    python -m methods sweep saliency --over images --dataset photos/ --out s/ --workers 4

Each technique's options come from its declaration (``methods.lib.options``); the options every
technique shares (--model, --image or --dataset, --out, --seed, --force) are added here. The
output folder is checked before any work: a folder holding files is refused unless --force.
Sweeps are :mod:`methods.sweep`; folder scans, resumable and on a cluster, :mod:`methods.lib.scan`.
"""

import argparse
import contextlib
import os
import sys

import methods.sweep
from methods.lib.options import TECHNIQUES

MESSAGE_LIMIT = 600


def build_parser():
    parser = argparse.ArgumentParser(prog="python -m methods", description="Backprop-to-image techniques on minigrad "
                                     "models. Run a technique with --help for its options.")
    commands = parser.add_subparsers(dest="technique", metavar="TECHNIQUE")
    for name, spec in TECHNIQUES.items():
        sub = commands.add_parser(name, help=f"{spec.title} ({spec.paper})", description=f"{spec.title} ({spec.paper}).")
        _technique_arguments(sub, spec, sweeping=False)
    gallery = commands.add_parser("gallery", help="render every technique into OUT/index.html")
    gallery.add_argument("--out", default="gallery", help="output folder (default: gallery)")
    gallery.add_argument("--model", default="fashion-vgg", help="model to render with (default: fashion-vgg)")
    gallery.add_argument("--technique", dest="only", action="append", default=None, choices=list(TECHNIQUES),
                         metavar="NAME", help="render only this technique (repeatable)")
    gallery.add_argument("--force", action="store_true", help="replace an existing gallery")
    explore = commands.add_parser("explore", help="look inside a network live in the browser (a local server)")
    explore.add_argument("--model", default="fashion-vgg", help="model shown first (default: fashion-vgg)")
    explore.add_argument("--port", type=_port, default=8000, help="port, 0 for any free one (default: 8000)")
    explore.add_argument("--host", default="127.0.0.1", help="address to listen on (default: 127.0.0.1, this "
                                                             "machine only)")
    explore.add_argument("--limit", type=_positive, default=None,
                         help="scan only the first N images of the sample dataset for top patches (default: all)")
    about = "\n\n".join(methods.sweep.__doc__.split("\n\n")[:4]).replace("``", "")
    sweep = commands.add_parser("sweep", help="run a technique over many images, units or option values, on a Dask "
                                "cluster with --workers", description=about,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    swept = sweep.add_subparsers(dest="swept", metavar="TECHNIQUE", required=True)
    for name, spec in TECHNIQUES.items():
        sub = swept.add_parser(name, help=f"{spec.title} ({spec.paper})",
                               description=f"A sweep of {spec.title} ({spec.paper}); see python -m methods sweep --help.")
        _technique_arguments(sub, spec, sweeping=True)
    return parser


def _technique_arguments(sub, spec, sweeping):
    """The arguments of ``python -m methods NAME`` (and of ``python -m methods sweep NAME``)."""
    name = spec.name
    if spec.inputs == "image" and not sweeping:
        sub.add_argument("--image", default=spec.image,
                         help=f"the image: a file, or sample:NAME (a shipped photo or texture) (default: {spec.image})")
    elif spec.inputs not in ("image", "none"):
        sub.add_argument("--model", default=spec.model or "fashion-vgg",
                         help="model name for minigrad.models.load, or a weights file "
                              f"(default: {spec.model or 'fashion-vgg'})")
    if spec.inputs in ("images", "pictures") or spec.queries or (spec.inputs == "image" and sweeping):
        what = "query image" if spec.queries else "image"
        default = ("dataset indices" if spec.queries else
                   spec.image or "sample:0 for fashion-vgg, sample:chelsea otherwise")
        more = "" if spec.inputs == "pictures" and not sweeping else "; repeat for a batch"
        sub.add_argument("--image", action="append", default=None,
                         help=f"{what}: a file, sample:NAME (a shipped photo) or sample:INDEX (a Fashion-MNIST "
                              f"test image){more} (default: {default})")
    if spec.inputs == "dataset" or sweeping:
        sub.add_argument("--dataset", default="sample",
                         help="'sample' (the Fashion-MNIST sample for fashion-vgg, crops of the shipped photos for "
                              "other models) or a folder of images, read as it is scanned (default: sample)")
        sub.add_argument("--limit", type=_positive, default=None, help="use only the first N images (default: all)")
        sub.add_argument("--cache", default=None,
                         help="folder for the shards of folder scans (default: $MINIGRAD_SCAN_CACHE or "
                              "~/.cache/minigrad/scans; 'none': a temporary folder, so nothing is resumable)")
        sub.add_argument("--workers", type=_positive, default=None,
                         help="run on a Dask LocalCluster of this many processes (pip install -e '.[distributed]')"
                              + ("" if sweeping else ": the folder scan's shards are its tasks"))
        sub.add_argument("--scheduler", default=None, help="run on the Dask cluster whose scheduler is at this address "
                                                           "(tcp://host:8786) instead")
    if sweeping:
        sub.add_argument("--over", required=True,
                         help="what to sweep: images, units (of --layer), or an option's name (e.g. eps)")
        sub.add_argument("--values", default=None, help="with --over OPTION: its values, comma-separated")
        sub.add_argument("--units", default=None, help="with --over units: channels such as 0-63,100 (default: all)")
        sub.add_argument("--retries", type=int, default=2, help="extra attempts of a failed run (default: 2)")
        sub.add_argument("--chunk", type=_positive, default=1, help="items per Dask task (default: 1)")
        sub.add_argument("--resume", action="store_true", help="go on with an interrupted sweep in --out")
    sub.add_argument("--out", default=f"out/{name}" + ("-sweep" if sweeping else ""),
                     help=f"folder for the pictures and JSON (default: out/{name}{'-sweep' if sweeping else ''})")
    if "seed" not in {o.name for o in spec.options}:
        sub.add_argument("--seed", type=int, default=0, help="minigrad's random seed (default: 0)")
    if not sweeping:
        sub.add_argument("--force", action="store_true", help="replace earlier results in --out")
    for option in spec.options:
        option.add_to(sub)


def _positive(text):
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a positive integer, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be a positive integer (or leave it out for all), got {value}")
    return value


def _port(text):
    if not text.isdigit() or int(text) > 65535:
        raise argparse.ArgumentTypeError(f"must be a port number from 0 to 65535, got {text!r}")
    return int(text)


def list_techniques():
    width = max(len(name) for name in TECHNIQUES)
    for name, spec in TECHNIQUES.items():
        print(f"{name:<{width}}  {spec.title} ({spec.paper})")


def _shorten(text):
    text = str(text)
    return text if len(text) <= MESSAGE_LIMIT else text[: MESSAGE_LIMIT - 3] + "..."


def run(args):
    import minigrad
    from methods.lib.output import check_folder
    from methods.lib.runner import run_technique
    from minigrad import models

    if args.technique == "explore":
        from methods.explore import serve

        return serve(args.model, args.host, args.port, dataset_limit=args.limit)
    if args.technique == "gallery":
        from methods.gallery import render

        entries = render(args.out, model_name=args.model, techniques=args.only, force=args.force)
        failed = [e for e in entries if e.get("error")]
        print(f"{len(entries) - len(failed)} techniques rendered into {args.out}/index.html")
        for entry in failed:
            print(f"error: {entry['technique']}: {_shorten(entry['error'])}", file=sys.stderr)
        return 1 if failed else 0
    if args.technique == "sweep":
        return _sweep(args)
    spec = TECHNIQUES[args.technique]
    check_folder(args.out, args.force)
    seed = getattr(args, "seed", 0)
    minigrad.manual_seed(seed)
    model = models.load(args.model) if spec.inputs not in ("image", "none") else None
    values = {o.name: getattr(args, o.name) for o in spec.options}
    images = [args.image] if spec.inputs == "image" else getattr(args, "image", None)
    with _scan_cluster(args, seed):
        result, notes = run_technique(spec, model, values, images=images, dataset=getattr(args, "dataset", "sample"),
                                      limit=getattr(args, "limit", None), cache=_cache(args))
    for note in notes:
        print(f"note: {note}", file=sys.stderr)
    if result.text():
        print(result.text())
    for path in result.save(args.out, force=True):
        print(path)
    return 0


def _cache(args):
    cache = getattr(args, "cache", None)
    return False if cache == "none" else cache


def _scan_cluster(args, seed):
    """With --workers or --scheduler, a context in which folder scans run on that Dask cluster."""
    if not (getattr(args, "workers", None) or getattr(args, "scheduler", None)):
        return contextlib.nullcontext()
    from methods.lib import scan
    from methods.lib.cluster import connect

    stack = contextlib.ExitStack()
    client = stack.enter_context(connect(args.workers, args.scheduler))
    stack.enter_context(scan.distributed(client, args.model, seed))
    return stack


def _sweep(args):
    spec = TECHNIQUES[args.swept]
    record = methods.sweep.sweep(
        args.swept, args.out, args.over, model=getattr(args, "model", None),
        options={o.name: getattr(args, o.name) for o in spec.options},
        units=None if args.units is None else methods.sweep.parse_units(args.units),
        values=None if args.values is None else [v for v in args.values.split(",") if v.strip()],
        images=getattr(args, "image", None), dataset=args.dataset, limit=args.limit, seed=getattr(args, "seed", 0),
        workers=args.workers, scheduler=args.scheduler, retries=args.retries, chunk=args.chunk, cache=_cache(args),
        resume=args.resume)
    for row in record["items"]:
        if row["status"] == "failed":
            print(f"error: {row['folder']}: {_shorten(row['error'])}", file=sys.stderr)
    retried = f", {len(record['retried'])} re-run ({', '.join(record['retried'][:10])})" if record["retried"] else ""
    print(f"{record['ok']} of {len(record['items'])} results in {args.out}{retried}; "
          f"{', '.join(record['contact_sheets']) or 'no contact sheet'}; sweep.json")
    return 1 if record["failed"] else 0


def main(argv=None):
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.technique is None:
        try:
            list_techniques()
        except BrokenPipeError:  # the list piped into a command that stopped reading (head)
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0
    try:
        return run(args)
    except (ValueError, KeyError, TypeError, FileNotFoundError, FileExistsError, ImportError, OSError) as error:
        message = error.args[0] if isinstance(error, KeyError) and error.args else error
        print(f"error: {_shorten(message)}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    raise SystemExit(main())
