"""``python -m methods gallery --out DIR [--model NAME]``: every technique on one model, in one page.

Each technique runs with its declared defaults (or the lighter ``gallery`` values some options
declare, to keep the page quick) on the model's default image or sample dataset, exactly as
``python -m methods NAME`` would; the results land in ``DIR/<technique>/`` and ``DIR/index.html``
shows each one's figures with the technique, paper, parameters and time taken. A technique that
fails is shown with its error and the others still render.
"""

import html
import json
import os
import time

from methods.lib.images import contact_sheet
from methods.lib.options import TECHNIQUES
from methods.lib.output import check_folder, jsonable, prepare_folder, write_file, write_png
from methods.lib.progress import Progress
from methods.lib.runner import run_technique

__all__ = ["render"]


def render(out, model_name="fashion-vgg", techniques=None, force=False, verbose=None):
    """Render ``techniques`` (default: all registered) for ``model_name`` into ``out``; returns one
    entry per technique (with ``error`` set for those that failed). A technique that needs its own
    kind of model (``Technique.model``: BagNet evidence) is shown on that one."""
    import minigrad
    from minigrad import models

    unknown = sorted(set(techniques or ()) - set(TECHNIQUES))
    if unknown:
        raise ValueError(f"unknown technique(s) {', '.join(unknown)}; known: {', '.join(TECHNIQUES)}")
    chosen = [spec for name, spec in TECHNIQUES.items() if techniques is None or name in techniques]
    check_folder(out, force)
    model = models.load(model_name)
    entries = []
    progress = Progress(chosen, f"gallery ({model_name})", verbose=verbose)
    for spec in progress:
        progress.set(technique=spec.name)
        minigrad.manual_seed(0)
        entry = {"technique": spec.name, "title": spec.title, "paper": spec.paper,
                 "model": None if spec.inputs in ("image", "none") else spec.model or model_name}
        start = time.perf_counter()
        try:
            own = models.load(spec.model) if spec.model else model
            result, _ = run_technique(spec, own, spec.gallery_values(), limit=_gallery_limit(spec, own))
            folder = os.path.join(out, spec.name)
            paths = result.save(folder, force=True)
        except (ValueError, TypeError, KeyError, OSError) as error:
            entry.update(error=f"{type(error).__name__}: {error}", seconds=round(time.perf_counter() - start, 2))
            entries.append(entry)
            continue
        entry.update(params=result.params, seconds=round(time.perf_counter() - start, 2),
                     figures=[os.path.relpath(p, out) for p in paths if p.endswith(".png")
                              and os.path.basename(p)[len(spec.name) + 1:-4] in result.figures()],
                     files=[os.path.relpath(p, out) for p in paths])
        entries.append(entry)
    prepare_folder(out, force=True)
    overview = _overview(out, model_name, entries)
    if overview is not None:
        write_png(out, "overview.png", overview, force=True)
    write_file(out, "index.html", _page(model_name, entries, overview is not None).encode("utf-8"), force=True)
    return entries


def _overview(out, model_name, entries, cell=(420, 600), columns=3):
    """One picture of the whole gallery: each technique's first figure fitted into a ``cell``
    (height, width) under its name (README shows it)."""
    shown = [entry for entry in entries if entry.get("figures")]
    if not shown:
        return None
    return contact_sheet([os.path.join(out, entry["figures"][0]) for entry in shown],
                         [f"{entry['technique']} ({entry['paper']})" for entry in shown], cell, columns)


#: Images of the 2,000-image Fashion-MNIST sample the gallery gives a dataset technique (the rest
#: adds time, not insight): t-SNE embeds 1,000; the embedding networks train on 400 and test on 100.
LIMITS = {"tsne": 1000, "embeddings": 500}


def _gallery_limit(spec, model):
    """How many sample images ``spec`` gets on fashion-vgg (see :data:`LIMITS`); None: all."""
    return LIMITS.get(spec.name) if model.input_shape == (1, 28, 28) else None


def _page(model_name, entries, overview):
    sections = []
    for entry in entries:
        model = f" --model {entry['model']}" if entry["model"] else ""  # None: no network
        head = (f'<h2 id="{html.escape(entry["technique"])}">{html.escape(entry["title"])}</h2>'
                f'<p>{html.escape(entry["paper"])} &middot; <code>python -m methods {html.escape(entry["technique"])}'
                f'{html.escape(model)}</code> &middot; {entry["seconds"]:.2f} s</p>')
        if entry.get("error"):
            sections.append(f'<section>{head}<p class="error">failed: {html.escape(entry["error"])}</p></section>')
            continue
        params = html.escape(json.dumps(jsonable(entry["params"])))
        figures = "".join(f'<figure><a href="{html.escape(p)}"><img src="{html.escape(p)}" alt="{html.escape(p)}">'
                          f"</a></figure>" for p in entry["figures"])
        files = " ".join(f'<a href="{html.escape(p)}">{html.escape(os.path.basename(p))}</a>' for p in entry["files"])
        sections.append(f"<section>{head}<p><small>parameters: <code>{params}</code></small></p>{figures}"
                        f"<details><summary>all files</summary><p>{files}</p></details></section>")
    link = '<p><a href="overview.png">the whole gallery in one picture</a></p>' if overview else ""
    contents = " &middot; ".join(f'<a href="#{html.escape(e["technique"])}">{html.escape(e["technique"])}</a>'
                                 for e in entries)
    style = ("body{font-family:sans-serif;max-width:1200px;margin:auto;padding:0 1em}figure{display:inline-block;"
             "margin:6px}img{max-width:100%;height:auto;border:1px solid #ddd}section{border-top:1px solid #ccc}"
             ".error{color:#b00}")
    return (f"<!doctype html><html><head><meta charset='utf-8'><title>minigrad gallery: {html.escape(model_name)}"
            f"</title><style>{style}</style></head><body><h1>minigrad gallery: <code>{html.escape(model_name)}</code>"
            f"</h1><p>{contents}</p>{link}{''.join(sections)}</body></html>\n")
