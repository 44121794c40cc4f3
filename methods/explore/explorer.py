"""The explorer's work, off the request threads: models and images, every view computed in a
worker pool with its progress reported, the results cached with their pictures and files.

A view is a :class:`Job` keyed by what it was asked (view, model, image, option values): asking
again finds the same job, running or done. Quick views (prediction, activation grid, the
gradient maps, the backprop inspector) share one pool and the views computed on demand
(occlusion, top patches, regularized visualization) another, so a long optimization never holds
up a click. The techniques run as they are registered (``methods.lib.options.TECHNIQUES``, looked
up by name when asked), with the option values the gallery uses, overridden by the request's;
their results are drawn for the page from their own panels (colour maps and colour-bar ranges as
their figures have them) or figures, and saved with ``Result.save`` -- the files the command line
writes -- when a download is asked for.

Nothing is read from a path the page names: images are shipped samples (``sample:NAME``,
``sample:INDEX``) or uploads (``upload:ID``), kept in the explorer's temporary folder with every
file it writes, and removed with it by :meth:`Explorer.close`.
"""

import concurrent.futures
import hashlib
import io
import json
import math
import os
import re
import shutil
import sys
import tempfile
import threading
import time
import traceback
from collections import OrderedDict

import numpy as np

import minigrad
from methods import data
from methods.explore import inspector
from methods.lib import progress
from methods.lib.attribution import AttributionResult
from methods.lib.datasets import default_image, load_dataset, load_images, load_pixels
from methods.lib.features import last_convolution, layer_activations
from methods.lib.figures import value_range
from methods.lib.images import colorize, colormap, grid, require, rgb, tile_vector, to_uint8
from methods.lib.options import TECHNIQUES
from methods.lib.output import jsonable
from minigrad import models
from minigrad.models.preprocessing import read_image

__all__ = ["SLOW", "VIEWS", "Explorer", "Job", "RequestError"]

#: The registered techniques the page shows, by name; those computed on demand are in SLOW.
VIEWS = ("saliency", "deconvnet", "guided-backprop", "grad-cam", "occlusion", "patches", "visualize-unit")
SLOW = ("occlusion", "patches", "visualize-unit")

#: Errors a technique raises for a request it cannot serve (a unit out of range, a bad option).
USER_ERRORS = (ValueError, TypeError, KeyError, FileNotFoundError)

UPLOAD_LIMIT = 20 * 2**20  # bytes
MAX_UPLOADS = 64
MAX_JOBS = 64
MAX_MODELS = 2
THUMBNAIL = 96  # pixels, the sample strip
GRID_TILE = 64  # pixels, the largest tile of an activation grid (the enlarged channel is native)


class RequestError(Exception):
    """A request the explorer refuses: ``status`` (an HTTP 4xx code) and a message for the page."""

    def __init__(self, status, message):
        super().__init__(message)
        self.status = status


class Cancelled(Exception):
    """Raised inside a job's progress loop when the explorer closes, so its thread stops."""


def _one_blas_thread():
    """Limit BLAS to one thread while the explorer runs (threadpoolctl, when installed).

    minigrad's CPU kernels split their matrix products across threads by hand on the main thread
    only (``kernels/cpu/_gemm.py``); on the explorer's worker threads they call BLAS directly, and
    a multi-threaded OpenBLAS wakes and spins its own pool for every product. On this 2-core
    machine, shared, VGG16's forward + backward took 13 s on a worker thread with BLAS's threads
    and 1.9 s with one (2.6 s on the main thread)."""
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:
        return None
    return threadpool_limits(limits=1, user_api="blas")


def png(image):
    """A uint8 (H, W) or (H, W, 3) picture as PNG bytes."""
    Image = require("PIL.Image", "drawing the explorer's pictures")
    buffer = io.BytesIO()
    Image.fromarray(np.ascontiguousarray(image)).save(buffer, format="PNG", compress_level=3)
    return buffer.getvalue()


def colorbar(cmap, low, high, label):
    """What the page draws a colour bar from: 11 colours of ``cmap``, the range and its label."""
    stops = colormap(cmap, 11)
    return {"colours": ["#" + "".join(f"{int(c):02x}" for c in stop) for stop in stops], "low": float(low),
            "high": float(high), "label": label or ""}


class Job:
    """One view being computed or done: ``future`` gives its payload (a JSON-able dict);
    ``progress`` the last step its loops reported; ``pictures`` {name: PNG bytes} and ``lazy``
    (name -> uint8 picture or None) what its page shows; ``result`` the :class:`Result` saved for
    downloads, or ``make_result`` making it on demand."""

    def __init__(self, key, view, closing):
        self.key, self.view, self.closing = key, view, closing
        self.future = None
        self.progress = None
        self.started, self.seconds = time.perf_counter(), None
        self.pictures, self.lazy = {}, None
        self.result, self.make_result, self.saved = None, None, None

    def report(self, step, count, total):
        if self.closing.is_set():
            raise Cancelled("the explorer is closing")
        self.progress = {"step": step, "count": count, "total": total}

    def picture(self, name, image):
        """Keep ``image`` as PNG; returns its address."""
        self.pictures[name] = png(image)
        return self.url(name)

    def url(self, name):
        return f"/api/pictures/{self.key}/{name}.png"


def _parse(option, text):
    """A query-string value for ``option`` (as the command line writes it; "none" for None)."""
    if text.lower() in ("", "none", "null") and option.default is None:
        return None
    if option.kind == "bool":
        flags = {"true": True, "1": True, "yes": True, "false": False, "0": False, "no": False}
        if text.lower() not in flags:
            raise RequestError(400, f"{option.name} must be true or false, got {text!r}")
        return flags[text.lower()]
    try:
        return option.parse(text)
    except ValueError as error:
        raise RequestError(400, str(error).replace(option.flag, option.name)) from None


def parse_options(options, query):
    """{name: value} from a query ({name: text}; dashes or underscores), each option checked;
    an unknown name is a 400 naming the known ones."""
    known = {o.name: o for o in options}
    values = {}
    for name, text in query.items():
        option = known.get(name.replace("-", "_"))
        if option is None:
            raise RequestError(400, f"unknown parameter {name!r}; the options are: {', '.join(known) or 'none'}")
        try:
            values[option.name] = option.check(_parse(option, text))
        except ValueError as error:
            raise RequestError(400, str(error)) from None
    return values


class Explorer:
    """The state behind one explorer server: ``model`` the model shown first (any name
    ``minigrad.models.load`` accepts, a file too: it is the operator's choice; the page may pick
    only among it and :func:`minigrad.models.available`); ``workers`` / ``slow_workers`` the
    sizes of the pools of quick views and of views on request; ``dataset_limit`` how many images of the sample dataset the patches
    scan (None: all)."""

    def __init__(self, model="fashion-vgg", workers=2, slow_workers=1, dataset_limit=None):
        self.default_model = model
        self.allowed = list(dict.fromkeys([model, *models.available()]))
        self.dataset_limit = dataset_limit
        self.folder = tempfile.mkdtemp(prefix="minigrad-explore-")
        os.mkdir(os.path.join(self.folder, "uploads"))
        os.mkdir(os.path.join(self.folder, "results"))
        self.closing = threading.Event()
        self.fast = concurrent.futures.ThreadPoolExecutor(workers, thread_name_prefix="explore")
        self.slow = concurrent.futures.ThreadPoolExecutor(slow_workers, thread_name_prefix="explore-slow")
        # small jobs that must not wait behind a view: thumbnails, pictures drawn on request, uploads, saving
        self.small = concurrent.futures.ThreadPoolExecutor(2, thread_name_prefix="explore-small")
        self.lock = threading.Lock()  # the dictionaries below
        self.load_lock = threading.Lock()  # one model loads at a time: a -random one draws from minigrad's generator
        self.warnings_lock = threading.Lock()  # load_images and load_dataset record warnings, a global state
        self.upload_lock = threading.Lock()  # one upload written and checked at a time
        self.jobs, self.models, self.inputs, self.datasets = OrderedDict(), OrderedDict(), OrderedDict(), {}
        self.uploads = OrderedDict()  # id -> {"path", "width", "height"}
        self._fashion = None
        self._blas = _one_blas_thread()

    def close(self):
        """Stop the workers (a running loop stops at its next step) and remove every file written."""
        self.closing.set()
        for pool in (self.fast, self.slow, self.small):
            pool.shutdown(wait=True, cancel_futures=True)
        shutil.rmtree(self.folder, ignore_errors=True)
        if self._blas is not None:
            self._blas.restore_original_limits()
            self._blas = None

    # ---- what the page may name ----------------------------------------------------------------
    def check_model(self, name):
        if name not in self.allowed:
            raise RequestError(400, f"unknown model {name!r}; the models here are: {', '.join(self.allowed)}")
        return name

    def check_image(self, spec):
        """``spec`` if it names a shipped sample or an upload; never a path."""
        kind, _, key = spec.partition(":")
        if kind == "sample" and (key in data.SAMPLE_IMAGES or (key.isdigit() and int(key) < self.fashion_count())):
            return spec
        if kind == "upload" and key in self.uploads:
            return spec
        if kind == "upload":
            raise RequestError(404, f"no upload {key!r} here (uploads last as long as the server)")
        raise RequestError(400, f"unknown image {spec!r}: give sample:NAME ({', '.join(sorted(data.SAMPLE_IMAGES))}), "
                                f"sample:0..{self.fashion_count() - 1} (Fashion-MNIST) or an upload")

    def fashion_count(self):
        if self._fashion is None:
            self._fashion = data.fashion_sample()[1]
        return len(self._fashion)

    def views(self):
        """{view: whether its technique is registered here} (visualize-unit may not be)."""
        return {name: name in TECHNIQUES for name in VIEWS}

    def options(self):
        """{view: the names of its options} for the views registered here."""
        return {name: [o.name for o in TECHNIQUES[name].options] for name in VIEWS if name in TECHNIQUES}

    def samples(self):
        """The shipped images the page offers: the photographs, and the first Fashion-MNIST test
        image of each class."""
        out = [{"image": f"sample:{name}", "label": name} for name in sorted(data.SAMPLE_IMAGES)]
        self.fashion_count()
        for label, name in enumerate(data.FASHION_CLASSES):
            index = int(np.flatnonzero(self._fashion == label)[0])
            out.append({"image": f"sample:{index}", "label": f"{name} (#{index})"})
        return out

    # ---- models, images, datasets ---------------------------------------------------------------
    def model(self, name):
        """The model ``name``, loaded once (a ``-random`` one with seed 0, so always the same)."""
        self.check_model(name)
        with self.lock:
            model = self.models.get(name)
        if model is None:
            with self.load_lock:
                model = self.models.get(name)
                if model is None:
                    minigrad.manual_seed(0)
                    model = models.load(name)
        with self.lock:
            self.models[name] = model
            self.models.move_to_end(name)
            while len(self.models) > MAX_MODELS:
                self.models.popitem(last=False)
        return model

    def _input(self, model_name, image):
        """(x, notes): the image as the model takes it, and the resize notes."""
        key = (model_name, image)
        model = self.model(model_name)
        with self.warnings_lock:
            if key not in self.inputs:
                kind, _, name = image.partition(":")
                source = self.uploads[name]["path"] if kind == "upload" else image
                x, notes = load_images(model, [source])
                self.inputs[key] = (x, [note.replace(source, image) for note in notes])
                while len(self.inputs) > 16:
                    self.inputs.popitem(last=False)
            return self.inputs[key]

    def _dataset(self, model_name):
        """The sample dataset at the model's input size (for fashion-vgg the Fashion-MNIST images;
        otherwise crops of the shipped photographs, resized once: a second or so)."""
        model = self.model(model_name)
        with self.warnings_lock:
            if model_name not in self.datasets:
                self.datasets[model_name] = load_dataset(model, "sample", self.dataset_limit)
            return self.datasets[model_name]

    # ---- jobs ------------------------------------------------------------------------------------
    def _submit(self, view, parts, work, pool=None):
        key = hashlib.sha256(json.dumps([view, jsonable(parts)], sort_keys=True).encode()).hexdigest()[:16]
        with self.lock:
            job = self.jobs.get(key)
            if job is not None:
                self.jobs.move_to_end(key)
                return job
            job = Job(key, view, self.closing)
            job.future = (pool or self.fast).submit(self._run, job, work)
            done = [k for k, j in self.jobs.items() if j.future.done()]
            for old in done[: max(0, len(self.jobs) + 1 - MAX_JOBS)]:
                del self.jobs[old]
                shutil.rmtree(os.path.join(self.folder, "results", old), ignore_errors=True)
            self.jobs[key] = job
        return job

    @staticmethod
    def _run(job, work):
        with progress.report_to(job.report):
            payload = work(job)
        job.seconds = round(time.perf_counter() - job.started, 3)
        return payload

    def job(self, key):
        with self.lock:
            job = self.jobs.get(key)
        if job is None:
            raise RequestError(404, f"no view {key!r} here (it may have been dropped from the cache; ask again)")
        return job

    def state(self, job, wait=1.0):
        """(HTTP status, JSON body) of ``job`` after waiting up to ``wait`` seconds for it."""
        try:
            payload = job.future.result(timeout=wait)
        except concurrent.futures.TimeoutError:
            return 202, {"status": "running", "job": job.key, "view": job.view, "progress": job.progress,
                         "seconds": round(time.perf_counter() - job.started, 1)}
        except RequestError as error:
            return error.status, {"status": "error", "error": str(error)}
        except USER_ERRORS as error:
            message = error.args[0] if isinstance(error, KeyError) and error.args else str(error)
            return 400, {"status": "error", "error": str(message).replace(self.folder, "<explorer folder>")}
        except Exception as error:  # noqa: BLE001 - a bug: shown, logged, and not cached so that asking again retries
            with self.lock:
                self.jobs.pop(job.key, None)
            traceback.print_exception(error, file=sys.stderr)
            return 500, {"status": "error", "error": f"internal error in {job.view}: {type(error).__name__}: {error}"}
        return 200, {"status": "done", "job": job.key, "view": job.view, "seconds": job.seconds, **payload}

    # ---- views -------------------------------------------------------------------------------------
    def predict(self, model_name, image):
        """The image as the model sees it, its top-5 classes, and the model's layers."""
        self.check_model(model_name)
        self.check_image(image)

        def work(job):
            model = self.model(model_name)
            x, notes = self._input(model_name, image)
            with minigrad.no_grad():
                logits = model(minigrad.tensor(x))
            try:
                layer = last_convolution(model)
            except ValueError:
                layer = model.layer_names[0]
            top = model.decode(logits, k=5)[0]
            return {"model": model_name, "image": image, "input": job.picture("input", model.deprocess(x)[0]),
                    "size": list(x.shape[2:]), "notes": notes, "layers": list(model.layer_names),
                    "layer": layer, "labels": list(model.labels or ()),
                    "top": [{"index": i, "label": model.label(i), "probability": p} for i, _, p in top]}

        return self._submit("predict", [model_name, image], work)

    def activations(self, model_name, image, layer):
        """Every channel of ``layer``, one colour scale for the layer (as Yosinski et al.'s
        toolbox): small tiles in one picture for the grid, each channel at full size on request."""
        self.check_model(model_name)
        self.check_image(image)

        def work(job):
            model = self.model(model_name)
            x, _ = self._input(model_name, image)
            a = layer_activations(model, x, layer)[0]
            low, high = float(a.min()), float(a.max())
            payload = {"layer": layer, "shape": list(a.shape), "colorbar": colorbar("gray", low, high, "activation")}
            if a.ndim == 1:  # fully connected: one tile of all units, each pixel a unit
                tile = tile_vector(a)
                payload.update(kind="units", units=int(a.size), columns=tile.shape[1], values=a.tolist(),
                               sprite=job.picture("sprite", to_uint8(np.nan_to_num(tile, nan=low), low, high)))
            elif a.ndim == 3:
                channels, h, w = a.shape
                factor = math.ceil(max(h, w) / GRID_TILE)
                small = a[:, : h // factor * factor, : w // factor * factor]
                small = small.reshape(channels, h // factor, factor, w // factor, factor).mean(axis=(2, 4))
                columns = math.ceil(math.sqrt(channels))
                sprite = grid(list(to_uint8(small, low, high)), columns=columns, pad=0, fill=0)
                pixels = to_uint8(a, low, high)

                def channel(name):  # the enlarged channel the page shows on hover, at full size
                    match = re.fullmatch(r"channel-(\d+)", name)
                    return pixels[int(match[1])] if match and int(match[1]) < channels else None

                job.lazy = channel
                payload.update(kind="channels", channels=channels, columns=columns, tile=list(small.shape[1:]),
                               sprite=job.picture("sprite", sprite), channel_url=job.url("channel-")[: -len(".png")],
                               maxima=[float(v) for v in a.reshape(channels, -1).max(axis=1)])
            else:
                raise ValueError(f"layer {layer!r} gives activations of shape {a.shape}; expected (C, H, W) or (F,)")
            job.make_result = lambda: self._result("activations", model_name, x, image, {"layer": layer})
            return payload

        return self._submit("activations", [model_name, image, layer], work)

    def technique(self, name, model_name, image, query):
        """Registered technique ``name`` (one of :data:`VIEWS`) with its gallery values and the
        options in ``query`` ({name: text}), drawn for the page."""
        spec = TECHNIQUES.get(name) if name in VIEWS else None
        if spec is None:
            raise RequestError(404, f"{name!r} is not available here" + (
                " (it is not registered in methods.lib.options.TECHNIQUES)" if name in VIEWS else
                f"; the views are: {', '.join(VIEWS)}"))
        self.check_model(model_name)
        if spec.inputs == "images":
            self.check_image(image)
        values = {**spec.gallery_values(), **parse_options(spec.options, query)}

        def work(job):
            x = self._input(model_name, image)[0] if spec.inputs == "images" else None
            result = self._result(name, model_name, x, image, values)
            job.result = result
            out = {"technique": name, "title": spec.title, "paper": spec.paper, "params": jsonable(result.params),
                   "summary": jsonable(result.summary, limit=64)}
            if isinstance(result, AttributionResult):
                panels = result.panels(0)
                out.update(subtitle=panels[0].title, panels=[self._panel(job, f"p{i}", p)
                                                             for i, p in enumerate(panels[1:])])
            else:
                out["figures"] = [{"title": title, "image": job.picture(f"f{i}", figure)}
                                  for i, (title, figure) in enumerate(result.figures().items())]
            return out

        return self._submit(name, [model_name, image if spec.inputs == "images" else None, values], work,
                            self.slow if name in SLOW else self.fast)

    def _result(self, name, model_name, x, image, values):
        """Run registered technique ``name`` as the command line would, on the cached inputs."""
        spec = TECHNIQUES[name]
        model = self.model(model_name)
        if spec.inputs == "images":
            result = spec.function(model, x, **values)
            result.inputs = {"images": [image]}
        elif spec.inputs == "dataset":
            dataset = self._dataset(model_name)
            result = spec.function(model, dataset, **values)
            result.inputs = {"dataset": "sample", "limit": self.dataset_limit, "images": len(dataset.images)}
        else:
            result = spec.function(model, **values)
        return result

    @staticmethod
    def _panel(job, name, panel):
        """One of a result's :class:`~methods.lib.figures.Panel` s for the page: its picture, its
        map coloured as the figure colours it (over the picture with the figure's opacity), and
        its colour bar."""
        out = {"title": panel.title, "image": None, "values": None, "alpha": None, "smooth": bool(panel.smooth),
               "colorbar": None}
        if panel.image is not None:
            out["image"] = job.picture(f"{name}-image", rgb(panel.image))
        if panel.values is not None:
            low, high = value_range(panel)
            out["values"] = job.picture(f"{name}-values", colorize(panel.values, panel.cmap, low, high))
            out["alpha"] = panel.alpha if panel.image is not None else None
            out["colorbar"] = colorbar(panel.cmap, low, high, panel.label)
        elif panel.low is not None and panel.high is not None:
            out["colorbar"] = colorbar(panel.cmap, panel.low, panel.high, panel.label)
        return out

    def inspect(self, model_name, image, query):
        """The backprop inspector (:mod:`methods.explore.inspector`) for the quantity in ``query``."""
        self.check_model(model_name)
        self.check_image(image)
        values = parse_options(inspector.OPTIONS, query)

        def work(job):
            model = self.model(model_name)
            x, _ = self._input(model_name, image)
            result = inspector.inspect(model, x, **values)
            result.inputs = {"images": [image]}
            job.result = result
            rows = []
            for i, row in enumerate(result.rows):
                maps = {rule: job.picture(f"r{i}-{rule}", result.colour(m)) for rule, m in row["maps"].items()}
                rows.append({"name": row["name"], "shape": row["shape"], "norms": row["norms"],
                             "cosine": row["cosine"], "maps": maps})
            return {"quantity": result.what, "parting": result.parting, "rules": list(inspector.RULES),
                    "rows": rows, "params": jsonable(result.params),
                    "colorbar": colorbar(inspector.CMAP, 0.0, 1.0, "gradient norm over channels at each position, "
                                                                   "as a fraction of the map's largest")}

        return self._submit("inspect", [model_name, image, values], work)

    # ---- pictures and files -------------------------------------------------------------------------
    def picture(self, key, name, wait=30.0):
        """The PNG bytes of picture ``name`` of view ``key``."""
        job = self.job(key)
        status, body = self.state(job, wait)
        if status != 200:
            raise RequestError(409 if status == 202 else status, body.get("error") or "the view is still running")
        if name in job.pictures:
            return job.pictures[name]
        image = job.lazy(name) if job.lazy is not None else None
        if image is None:
            raise RequestError(404, f"view {key} has no picture {name!r}")
        return self.small.submit(png, image).result(timeout=wait)

    def files(self, key, wait=60.0):
        """The names of the files ``Result.save`` wrote for view ``key`` (saving them the first time)."""
        job = self.job(key)
        status, body = self.state(job, wait)
        if status != 200:
            raise RequestError(409 if status == 202 else status, body.get("error") or "the view is still running")
        if job.result is None and job.make_result is None:
            raise RequestError(404, f"view {key} ({job.view}) has nothing to download")
        with self.lock:
            if job.saved is None:
                job.saved = self.small.submit(self._save, job)
        return job.saved.result(timeout=wait)

    def _save(self, job):
        result = job.result if job.result is not None else job.make_result()
        folder = os.path.join(self.folder, "results", job.key)
        return sorted(os.path.basename(path) for path in result.save(folder, force=True))

    def file(self, key, name):
        """The path of file ``name`` of view ``key``: only a name ``files`` listed."""
        if name not in self.files(key):
            raise RequestError(404, f"view {key} has no file {name!r}")
        return os.path.join(self.folder, "results", key, name)

    # ---- images from the page ---------------------------------------------------------------------
    def upload(self, body):
        """Keep an uploaded image (bytes) in the explorer's folder, once it decodes within bounds
        (the size is read from the header first: see ``read_image``). Returns its name for the page."""
        if not body:
            raise RequestError(400, "the upload is empty")
        digest = hashlib.sha256(body).hexdigest()[:16]
        path = os.path.join(self.folder, "uploads", digest)
        with self.upload_lock:
            known = self.uploads.get(digest)
            if known is None:
                with open(path, "wb") as handle:
                    handle.write(body)
                try:
                    pixels = self.small.submit(read_image, path).result()
                except (ValueError, OSError) as error:
                    os.remove(path)
                    raise RequestError(400, "the upload is refused: " + str(error).replace(path, "image")) from None
                known = self.uploads[digest] = {"path": path, "width": int(pixels.shape[1]),
                                                "height": int(pixels.shape[0])}
                while len(self.uploads) > MAX_UPLOADS:
                    _, old = self.uploads.popitem(last=False)
                    os.remove(old["path"])
        return {"image": f"upload:{digest}", "width": known["width"], "height": known["height"]}

    def thumbnail(self, image):
        """A small picture of an image for the page's strip (PNG bytes)."""
        self.check_image(image)

        def work(job):
            kind, _, key = image.partition(":")
            if kind == "upload":
                pixels = read_image(self.uploads[key]["path"], target=(THUMBNAIL, THUMBNAIL))
            else:
                pixels = load_pixels(image)
            Image = require("PIL.Image", "drawing thumbnails")
            im = Image.fromarray(rgb(pixels))
            scale = THUMBNAIL / max(im.size)
            im = im.resize((max(1, round(im.width * scale)), max(1, round(im.height * scale))),
                           Image.NEAREST if scale > 1 else Image.LANCZOS)
            job.picture("thumbnail", np.asarray(im))
            return {}

        job = self._submit("thumbnail", [image], work, self.small)
        self.state(job, wait=30.0)
        return self.picture(job.key, "thumbnail")

    def default_image(self, model_name):
        return default_image(self.model(model_name))
