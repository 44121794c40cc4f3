"""``python -m methods gallery --out DIR``: every implemented technique on the shipped models.

Each technique runs through its own CLI entry with its default options, so the gallery shows
exactly what ``python -m methods NAME`` gives; the pictures land in DIR with an index.html
that captions each one with the technique, model, parameters and time taken.
"""

import html
import json
import os
import time

from methods.progress import Progress

GALLERY_MODEL = "fashion-vgg"
GALLERY_IMAGES = ("sample:0",)


def render(parser, out, model_name=GALLERY_MODEL, images=GALLERY_IMAGES, techniques=None, verbose=None, force=False):
    """Run each technique into ``out/<technique>/`` and write ``out/index.html``; returns the entries."""
    import importlib

    import minigrad
    from methods.__main__ import implemented, load_images, module_name
    from methods import TECHNIQUES
    from minigrad import models

    chosen = [t for t in TECHNIQUES if implemented(t[0]) and (techniques is None or t[0] in techniques)]
    if not chosen:
        raise ValueError("no implemented technique to render" + (f" among {techniques}" if techniques else ""))
    os.makedirs(out, exist_ok=True)
    index_path = os.path.join(out, "index.html")
    if os.path.exists(index_path) and not force:
        raise FileExistsError(f"{index_path} exists; pass --force to replace the gallery")
    model = models.load(model_name)
    x = load_images(model, list(images))
    entries = []
    progress = Progress(chosen, "gallery", verbose=verbose)
    for name, title, paper in progress:
        progress.set(technique=name)
        argv = [name, "--model", model_name, "--out", os.path.join(out, name), "--force"]
        for image in images:
            argv += ["--image", image]
        args = parser.parse_args(argv)
        minigrad.manual_seed(args.seed)
        start = time.perf_counter()
        result = importlib.import_module(module_name(name)).run_cli(args, model, x)
        seconds = time.perf_counter() - start
        paths = result.save(args.out, overwrite=True)
        pictures = [os.path.relpath(p, out) for p in paths if p.endswith(".png")]
        entries.append({"technique": name, "title": title, "paper": paper, "model": model_name,
                        "params": result.params, "seconds": round(seconds, 3), "pictures": pictures})
    with open(index_path, "w") as handle:
        handle.write(_page(entries))
    return entries


def _page(entries):
    sections = []
    for entry in entries:
        params = html.escape(json.dumps(entry["params"], default=str))
        images = "".join(
            f'<figure><img src="{html.escape(p)}" alt="{html.escape(p)}"><figcaption>{html.escape(os.path.basename(p))}'
            f"</figcaption></figure>"
            for p in entry["pictures"]
        )
        sections.append(
            f'<section><h2>{html.escape(entry["title"])}</h2>'
            f'<p>{html.escape(entry["paper"])} &middot; <code>{html.escape(entry["technique"])}</code> on '
            f'<code>{html.escape(entry["model"])}</code> in {entry["seconds"]:.2f} s<br>'
            f"<small>parameters: <code>{params}</code></small></p>{images}</section>"
        )
    style = ("body{font-family:sans-serif;max-width:1100px;margin:auto}figure{display:inline-block;margin:6px}"
             "img{min-width:196px;max-width:480px;height:auto;image-rendering:pixelated;border:1px solid #ccc}section{border-top:1px solid #ddd}")
    return (f"<!doctype html><html><head><meta charset='utf-8'><title>minigrad gallery</title><style>{style}</style>"
            f"</head><body><h1>minigrad gallery</h1>{''.join(sections)}</body></html>\n")
