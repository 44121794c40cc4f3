"""``python -m methods sweep TECHNIQUE --over images|units|OPTION``: one registered technique run
over many images, units or option values, in this process or on a Dask cluster.

    python -m methods sweep saliency --over images --dataset photos/ --out sweep/ --workers 4
    python -m methods sweep patches --over units --layer pool5 --model vgg16 --dataset val/ --out units/
    python -m methods sweep occlusion --over size --values 4,7,14 --image sample:3 --out sizes/
    python -m methods sweep smoothgrad --over images --limit 100 --out s/ --scheduler tcp://head:8786

One sweep command, built on the technique registry, rather than ``--workers`` on each technique:
the sweep's own options (what to sweep over, the cluster, retries, chunking) are stated once for
every technique, the techniques stay plain functions of one input, and a sweep has its own output
(one folder per item, an index and a contact sheet) that a single run does not. (The techniques
that scan a folder also take ``--workers``: that spreads the one run's scan, not many runs.)
What is swept:

* ``images``: each image of ``--image`` (repeated) or of ``--dataset`` (a folder, or the sample)
  through a technique that takes images, one image per run;
* ``units``: each channel of ``--layer`` (``--units 0-63,100`` to choose) set as the technique's
  ``unit`` or ``channel`` option (guided backprop, deconvnet, patches, ...);
* any option of the technique by name (``eps`` of an attack or a robustness curve, ``size`` of
  occlusion, ...), over ``--values``.

Every item is one run of the technique, exactly as ``python -m methods TECHNIQUE`` would make it
on that item, with ``minigrad.manual_seed(seed)`` just before (the technique's own ``seed`` when it
has one), so a run's result depends on its item alone: a sweep on any number of workers is bit
for bit the serial sweep, which ``sweep.json`` shows (a SHA-256 of every array of each result,
and the thread settings it ran with: BLAS splits some products by thread, so the last bits match
when the threads do; a local cluster gives each worker cores // N threads, and a serial sweep
run with ``NUMBA_NUM_THREADS``, ``OMP_NUM_THREADS`` and ``OPENBLAS_NUM_THREADS`` set to that
matches it to the bit).
Each item's result is saved, as it completes, into its own folder under ``--out`` by
:meth:`~methods.lib.result.Result.save` (into a scratch folder first, then renamed into place, so a
folder under ``--out`` is a complete result); a failed run is retried ``--retries`` times, and a
run whose worker died is re-run on another (Dask's nanny restarts the worker); ``sweep.json``
reports every item (status, attempts, worker, seconds, fingerprint, error) and
``contact_sheet.png`` shows each result's first figure. ``--resume`` continues an interrupted
sweep in the same ``--out``, skipping the items already there.

With ``--workers N`` (a ``LocalCluster`` of N processes) or ``--scheduler ADDRESS`` (a running
cluster) the items are Dask tasks (``--chunk`` items each), each worker loading the model once by
name (memory-mapped safetensors, or the ``-random`` init from the seed) and running on the kernel
backend of this process; ``--out``, the dataset and the scan cache must be folders every worker
sees. For a technique that scans a folder (patches, neighbours, t-SNE) the first item runs here
with its scan spread over the workers, filling the scan cache the other items then read.
Dask is optional (``pip install -e ".[distributed]"``); without ``--workers`` / ``--scheduler``
nothing imports it.
"""

import contextlib
import hashlib
import json
import os
import shutil
import socket
import time
import uuid

import numpy as np

from methods.lib.datasets import image_files, sample_specs
from methods.lib.features import layer_activations
from methods.lib.images import contact_sheet
from methods.lib.options import TECHNIQUES
from methods.lib.output import check_folder, jsonable, prepare_folder, safe_name, write_json, write_png
from methods.lib.progress import Progress
from methods.lib.runner import run_technique

__all__ = ["UNIT_OPTIONS", "fingerprint", "parse_units", "run_items", "sweep"]

#: The options a unit sweep sets, the first one a technique has.
UNIT_OPTIONS = ("unit", "channel")
#: Scratch space inside --out: attempts and results being written.
SCRATCH = ".sweep"
#: Tiles per contact sheet, and their cell (height, width).
SHEET_TILES, SHEET_COLUMNS, SHEET_CELL = 100, 10, (240, 320)


def fingerprint(result):
    """SHA-256 of everything a result holds but timings: each array (dtype, shape, bytes) and each
    number and string among its attributes, in attribute order, through lists, tuples and dicts.
    Equal fingerprints mean bit-identical results."""
    digest = hashlib.sha256()

    def visit(name, value):
        if "seconds" in name:
            return
        if isinstance(value, np.ndarray) and value.dtype != object:
            digest.update(f"{name}:{value.dtype.str}:{value.shape}".encode())
            digest.update(np.ascontiguousarray(value).reshape(-1).view(np.uint8))
        elif isinstance(value, dict):
            for key in sorted(value, key=str):
                visit(f"{name}.{key}", value[key])
        elif isinstance(value, (list, tuple)):
            for i, item in enumerate(value):
                visit(f"{name}[{i}]", item)
        elif isinstance(value, (bool, int, float, str, np.generic)) or value is None:
            digest.update(f"{name}={value!r}".encode())

    for name in sorted(vars(result)):
        visit(name, vars(result)[name])
    return digest.hexdigest()


def parse_units(text):
    """"0-3,7" -> [0, 1, 2, 3, 7]."""
    units = []
    for part in str(text).replace(" ", "").split(","):
        low, _, high = part.partition("-")
        if not low.isdigit() or (high and not high.isdigit()) or (high and int(high) < int(low)):
            raise ValueError(f"units must be channel numbers and ranges such as 0-63,100, got {text!r}")
        units.extend(range(int(low), int(high or low) + 1))
    return units


# ----- one item, anywhere -----------------------------------------------------------------------


def run_items(tasks, model=None):
    """Run the sweep items ``tasks`` (dicts made by :func:`sweep`) one after the other, here or on
    a Dask worker (``model`` None: loaded once per worker by name); returns their records. An item
    whose folder is already complete is not run again."""
    return [_run_item(task, model) for task in tasks]


def _run_item(task, model):
    import minigrad
    from methods.lib.cluster import THREAD_VARIABLES, worker_model

    final = os.path.join(task["out"], task["folder"])
    if os.path.isdir(final):  # done by an earlier attempt or sweep
        with open(os.path.join(final, "sweep_item.json"), encoding="utf-8") as f:
            return json.load(f)
    scratch = os.path.join(task["out"], SCRATCH)
    attempt = f"{task['folder']}@{safe_name(socket.gethostname())}-{os.getpid()}-{uuid.uuid4().hex[:8]}"
    with open(os.path.join(scratch, "attempts", attempt), "x", encoding="utf-8"):
        pass
    start = time.perf_counter()
    if model is None and task["needs_model"]:
        model = worker_model(task["model"], task["seed"])
    minigrad.manual_seed(task["seed"])
    with minigrad.backend.using_backend(task["backend"]):
        result, notes = run_technique(TECHNIQUES[task["technique"]], model, task["values"], images=task["images"],
                                      dataset=task["dataset"], limit=task["limit"], cache=task["cache"])
    partial = os.path.join(scratch, "partial", attempt)
    files = [os.path.basename(path) for path in result.save(partial)]
    record = {"item": task["item"], "label": task["label"], "folder": task["folder"], "status": "ok",
              "files": files, "fingerprint": fingerprint(result), "notes": notes,
              "worker": f"{socket.gethostname()}-{os.getpid()}", "threads": {v: os.environ.get(v) for v in THREAD_VARIABLES},
              "seconds": round(time.perf_counter() - start, 3)}
    write_json(partial, "sweep_item.json", record)
    try:
        os.rename(partial, final)
    except OSError:  # another attempt of this item finished first: keep that one
        shutil.rmtree(partial, ignore_errors=True)
    return record


# ----- the sweep --------------------------------------------------------------------------------


def _items(spec, over, model, values, units, sweep_values, images, dataset, limit):
    """[(item, label, folder name, option values)] for the sweep."""
    if over == "images":
        if spec.inputs not in ("images", "pictures", "image"):
            raise ValueError(f"a sweep over images needs a technique that takes images; {spec.name} takes "
                             f"{'a dataset' if spec.inputs == 'dataset' else 'no image'}")
        specs = list(images) if images else image_files(dataset, limit) if dataset != "sample" else \
            sample_specs(model() if spec.inputs in ("images", "pictures") else None, limit)
        return [(s, s if s.startswith("sample:") else os.path.basename(s),
                 f"{i:05d}_{safe_name(os.path.splitext(os.path.basename(s))[0])}", values) for i, s in enumerate(specs)]
    if over == "units":
        option = next((o.name for o in spec.options if o.name in UNIT_OPTIONS), None)
        if option is None:
            raise ValueError(f"a sweep over units needs a technique with a unit or channel option; {spec.name} has "
                             f"{', '.join(o.name for o in spec.options)}")
        if units is None:
            if not values.get("layer"):
                raise ValueError("a sweep over all units needs --layer (or --units)")
            net = model()
            units = range(layer_activations(net, np.zeros((1,) + tuple(net.input_shape), np.float32),
                                            values["layer"]).shape[1])
        return [(u, f"unit {u}", f"unit_{u:04d}", {**values, option: u}) for u in units]
    option = next((o for o in spec.options if o.name == over), None)
    if option is None:
        raise ValueError(f"cannot sweep over {over!r}: use images, units or an option of {spec.name} "
                         f"({', '.join(o.name for o in spec.options)})")
    if not sweep_values:
        raise ValueError(f"a sweep over {over} needs --values")
    checked = [option.check(option.parse(v) if isinstance(v, str) else v) for v in sweep_values]
    return [(v, f"{over}={v}", f"{i:03d}_{over}_{safe_name(v)}", {**values, over: v}) for i, v in enumerate(checked)]


def sweep(technique, out, over, *, model="fashion-vgg", options=None, units=None, values=None, images=None,
          dataset="sample", limit=None, seed=0, workers=None, scheduler=None, retries=2, chunk=1, cache=None,
          resume=False, verbose=None):
    """Run ``technique`` (a registered name) once per item of ``over`` ("images", "units" or one of
    its option names, see the module docstring) on ``model`` (a name, as every worker loads it;
    None for a technique that takes an image alone), with the other ``options`` fixed; each result
    saved in its own folder under ``out``.

    ``units``: the channels of a unit sweep (default: all of ``options["layer"]``); ``values``: the
    option values of an option sweep; ``images`` / ``dataset`` / ``limit`` / ``cache``: the inputs,
    as the command line takes them; ``seed``: minigrad's seed before each run (the technique's own
    ``seed`` option when it has one); ``workers`` / ``scheduler``: run on Dask (else here);
    ``retries``: extra attempts of a failed run; ``chunk``: items per Dask task; ``resume``: go on
    with an interrupted sweep in ``out``. Returns the record written to ``out/sweep.json``.
    """
    import minigrad
    from minigrad import models

    if technique not in TECHNIQUES:
        raise ValueError(f"unknown technique {technique!r}; known: {', '.join(TECHNIQUES)}")
    spec = TECHNIQUES[technique]
    fixed = spec.check(dict(options or {}))
    seed = fixed.get("seed", seed)
    for name, number, low in (("retries", retries, 0), ("chunk", chunk, 1)):
        if isinstance(number, bool) or not isinstance(number, int) or number < low:
            raise ValueError(f"{name} must be an integer >= {low}, got {number!r}")
    out = os.path.abspath(check_folder(out, force=True))
    if not resume and os.path.isdir(out) and os.listdir(out):
        raise FileExistsError(f"{out} already holds files; choose another --out, or --resume to go on with the "
                              "sweep there")
    loaded = {}

    def load():
        if "model" not in loaded:
            minigrad.manual_seed(seed)
            loaded["model"] = models.load(model)
        return loaded["model"]

    items = _items(spec, over, load, fixed, units, values, images, dataset, limit)
    plan = {"technique": technique, "over": over, "model": model, "seed": seed, "options": fixed,
            "items": [item for item, *_ in items], "images": list(images) if images else None, "dataset": dataset,
            "limit": limit, "backend": minigrad.get_backend()}
    _start(out, plan, resume)
    tasks = [{"technique": technique, "model": model, "needs_model": spec.inputs not in ("image", "none"), "seed": seed,
              "backend": plan["backend"], "values": item_values,
              "images": [item] if over == "images" else images, "dataset": dataset, "limit": limit, "cache": cache,
              "out": out, "item": item, "label": label, "folder": folder}
             for item, label, folder, item_values in items]
    chunks = [tasks[i: i + chunk] for i in range(0, len(tasks), chunk)]
    records, started = {}, time.time()
    if workers or scheduler:
        parts = _on_cluster(chunks, load, model, seed, spec, dataset, workers, scheduler, retries, records)
    else:
        here = load if spec.inputs not in ("image", "none") else lambda: None
        parts = (_attempt(lambda part=part: run_items(part, here()), part, retries, records) for part in chunks)
    try:
        with contextlib.closing(parts):
            for _ in Progress(parts, f"sweep {technique} over {over}", total=len(tasks), verbose=verbose,
                              unit="items", size=len):
                pass
    except KeyboardInterrupt:
        _finish(out, plan, tasks, records, started, workers, scheduler, "interrupted")
        raise
    return _finish(out, plan, tasks, records, started, workers, scheduler, "done")


def _attempt(run, part, retries, records):
    """``run()`` for the items ``part`` (their records), up to ``retries`` more times while it
    fails; returns ``part``."""
    for attempt in range(retries + 1):
        try:
            for record in run():
                records[record["folder"]] = record
            return part
        except Exception as error:  # a failed run is retried, then reported; it never stops the sweep
            if attempt == retries:
                for task in part:
                    records.setdefault(task["folder"], {"item": task["item"], "label": task["label"],
                                                        "folder": task["folder"], "status": "failed",
                                                        "error": f"{type(error).__name__}: {error}"})
    return part


def _on_cluster(chunks, load, model, seed, spec, dataset, workers, scheduler, retries, records):
    """Run the chunks as Dask tasks, yielding each as it completes. A technique that scans a folder
    runs its first chunk here, its scan spread over the workers (filling the cache the rest read)."""
    from methods.lib import scan
    from methods.lib.cluster import as_completed, connect

    with connect(workers, scheduler) as client:
        if spec.inputs == "dataset" and dataset != "sample" and chunks:
            with scan.distributed(client, model, seed, retries):
                first = _attempt(lambda: run_items(chunks[0], load()), chunks[0], retries, records)
            yield first
            chunks = chunks[1:]
        futures = {client.submit(run_items, part, pure=False, retries=retries): part for part in chunks}
        try:
            for future in as_completed(futures):
                yield _attempt(future.result, futures[future], 0, records)
        finally:
            client.cancel(list(futures))


def _start(out, plan, resume):
    """Create ``out`` with its scratch folders and ``sweep.json`` (status running); on ``resume``,
    the sweep already there must be this one."""
    path = os.path.join(out, "sweep.json")
    if resume and os.path.exists(path):
        with open(path, encoding="utf-8") as f:
            earlier = json.load(f).get("plan")
        if earlier != jsonable(plan):
            raise ValueError(f"{out} holds a different sweep (sweep.json); --resume goes on with the same one only")
    prepare_folder(out, force=True)
    for sub in ("attempts", "partial"):
        os.makedirs(os.path.join(out, SCRATCH, sub), exist_ok=True)
    write_json(out, "sweep.json", {"status": "running", "plan": plan}, force=True)


def _finish(out, plan, tasks, records, started, workers, scheduler, status):
    """Count each item's attempts, draw the contact sheets, write ``sweep.json``, drop the scratch."""
    attempts = {}
    for name in os.listdir(os.path.join(out, SCRATCH, "attempts")):
        folder = name.split("@", 1)[0]
        attempts[folder] = attempts.get(folder, 0) + 1
    rows = []
    for task in tasks:
        record = records.get(task["folder"])
        if record is None:
            record = {"item": task["item"], "label": task["label"], "folder": task["folder"], "status": "not run"}
        rows.append({**record, "attempts": attempts.get(task["folder"], 0)})
    done = [row for row in rows if row["status"] == "ok" and any(f.endswith(".png") for f in row["files"])]
    sheets = []
    for page in range(0, len(done), SHEET_TILES):
        shown = done[page: page + SHEET_TILES]
        name = "contact_sheet.png" if len(done) <= SHEET_TILES else f"contact_sheet_{page // SHEET_TILES + 1:03d}.png"
        paths = [os.path.join(out, row["folder"], next(f for f in row["files"] if f.endswith(".png"))) for row in shown]
        write_png(out, name, contact_sheet(paths, [row["label"] for row in shown], SHEET_CELL, SHEET_COLUMNS, pad=4),
                  force=True)
        sheets.append(name)
    record = {"status": status, "plan": plan, "workers": workers, "scheduler": scheduler,
              "seconds": round(time.time() - started, 3), "ok": sum(row["status"] == "ok" for row in rows),
              "failed": [row["folder"] for row in rows if row["status"] == "failed"],
              "retried": [row["folder"] for row in rows if row["attempts"] > 1],
              "contact_sheets": sheets, "items": rows}
    write_json(out, "sweep.json", record, force=True)
    if status == "done":
        shutil.rmtree(os.path.join(out, SCRATCH), ignore_errors=True)
    return record
