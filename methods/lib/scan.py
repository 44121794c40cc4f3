"""Dataset-wide scans in bounded memory: every image of a dataset through the model once, batch by
batch, keeping per image only what a technique needs, in shards that outlive an interruption.

What the scanning techniques share (maximally activating patches, neighbours, t-SNE, and any
dataset-wide evaluation such as a robustness curve):

* a *work*: a picklable callable ``work(model, pixels, labels) -> {name: rows}`` that turns a
  batch of uint8 pixels (n, H, W, C) and their labels (n,) (None for an unlabelled dataset) into
  one row per image under each of its ``names``: :class:`LayerFeatures` (a layer's activations,
  as float32 or float16), :class:`ChannelPeaks` (each channel's strongest positions),
  :class:`Thumbnails`; it also has ``layer`` (the deepest layer it reads, or None) and ``key()``
  (what else its rows depend on, for the cache). A robustness curve's work returns, per image,
  whether the attacked image is still classified as its label at each epsilon; the curve is the
  mean of those rows over the store, and an interrupted evaluation resumes like any scan;
* a :class:`Store` of the rows, in shards of a fixed number of images (a multiple of the batch
  size, so the batches, and hence the bits, of a shard never depend on what was cached). For a
  folder it lies on disk, one ``.npy`` per shard and output, each written whole or not at all,
  in a cache folder keyed by the work, the model (the bytes of its layers up to the one read),
  the files (paths, sizes, times), the batch and shard sizes and the kernel backend; images in
  memory keep their rows in memory;
* :func:`scan`, which computes only the shards a store lacks (an interrupted scan resumes where
  it stopped), with progress in images/s and an ETA, in this process or, inside
  :func:`distributed`, one Dask task per shard;
* :func:`batch_size_for`: as many images per forward pass as fit :data:`MEMORY` of activations,
  measured on one image (VGG16 to pool5 at 224 x 224: 4), at most :data:`MAX_BATCH`;
* :class:`TopK`, the k smallest keys seen so far (ties to the lower index), how the techniques
  reduce the rows without holding them all.

Memory: the model, one batch's activations, one shard's rows and the list of files, whatever the
number of images; the stores are read back one memory-mapped shard at a time.
"""

import contextlib
import contextvars
import hashlib
import json
import os
import shutil
import sys
import tempfile
import weakref

import numpy as np

import minigrad
from methods.lib.datasets import FolderImages, read_pixels
from methods.lib.features import layer_activations
from methods.lib.inputs import to_host
from methods.lib.progress import Progress
from weights.safetensors import atomic_write

__all__ = ["MAX_BATCH", "MEMORY", "SHARD_IMAGES", "ChannelPeaks", "LayerFeatures", "Store", "Thumbnails", "TopK",
           "batch_size_for", "cache_root", "distributed", "model_key", "scan"]

#: Activation memory one forward pass may use (bytes), from which :func:`batch_size_for` sizes batches.
MEMORY = 512 * 2**20
#: The largest batch :func:`batch_size_for` chooses.
MAX_BATCH = 64
#: About this many images per shard (rounded to whole batches): what an interruption can lose, and
#: one Dask task's work.
SHARD_IMAGES = 256
#: Changes when the stored format does, so old caches are not read.
FORMAT = 1

_EXECUTOR = contextvars.ContextVar("methods.lib.scan executor", default=None)


def cache_root(cache=None):
    """Where folder scans keep their shards: ``cache`` when given, else ``$MINIGRAD_SCAN_CACHE``, else
    ``scans`` in minigrad's cache folder (``$MINIGRAD_HOME`` or ``~/.cache/minigrad``). Delete it
    at any time; a scan recomputes what it misses."""
    if cache:
        return os.fspath(cache)
    if os.environ.get("MINIGRAD_SCAN_CACHE"):
        return os.path.expanduser(os.environ["MINIGRAD_SCAN_CACHE"])
    from weights.registry import cache_dir

    return os.path.join(cache_dir(), "scans")


# ----- what a batch becomes ---------------------------------------------------------------------


class LayerFeatures:
    """Per image: ``layer``'s activations, flattened (the vectors neighbours and t-SNE compare), as
    ``dtype`` ("float32", or "float16" for half the disk and memory)."""

    def __init__(self, layer, dtype="float32"):
        if np.dtype(dtype).name not in ("float32", "float16"):
            raise ValueError(f"precision must be float32 or float16, got {dtype!r}")
        self.layer, self.dtype = layer, np.dtype(dtype).name
        self.names = ("features",)

    def key(self):
        return {"work": "features", "layer": self.layer, "dtype": self.dtype}

    def __call__(self, model, pixels, labels=None):
        acts = layer_activations(model, model.preprocessing.normalize(pixels), self.layer)
        return {"features": acts.reshape(len(acts), -1).astype(self.dtype)}


class ChannelPeaks:
    """Per image and channel of ``layer`` (``channels``: only these, None: all): the ``m`` strongest
    positions (row-major indices into the channel's map; a vector layer has one position) and
    their activations, strongest first, ties to the lower position."""

    def __init__(self, layer, m, channels=None):
        self.layer, self.m = layer, int(m)
        self.channels = None if channels is None else [int(c) for c in channels]
        self.names = ("values", "positions")

    def key(self):
        return {"work": "channel-peaks", "layer": self.layer, "m": self.m, "channels": self.channels}

    def __call__(self, model, pixels, labels=None):
        acts = layer_activations(model, model.preprocessing.normalize(pixels), self.layer)
        acts = acts.reshape(acts.shape[0], acts.shape[1], -1)
        if self.channels is not None:
            acts = acts[:, self.channels]
        order = np.argsort(-acts, axis=2, kind="stable")[..., :self.m]
        return {"values": np.take_along_axis(acts, order, 2).astype(np.float32), "positions": order.astype(np.int32)}


class Thumbnails:
    """Per image: its pixels at ``side`` x ``side``, sampled at rows (i * H) // side and columns
    (j * W) // side (nearest neighbour, as the t-SNE picture draws them); needs no model."""

    layer = None

    def __init__(self, side):
        self.side = int(side)
        self.names = ("thumbnails",)

    def key(self):
        return {"work": "thumbnails", "side": self.side}

    def __call__(self, model, pixels, labels=None):
        h, w = pixels.shape[1:3]
        rows, cols = (np.arange(self.side) * h) // self.side, (np.arange(self.side) * w) // self.side
        return {"thumbnails": pixels[:, rows][:, :, cols]}


# ----- where the rows live ----------------------------------------------------------------------


class Store:
    """The rows of one work over ``count`` images, in shards of ``shard`` images: shard i holds
    images [i * shard, min((i + 1) * shard, count)). With a ``folder``, each shard of each output
    is ``<name>-<i>.npy`` there, written to a temporary file and renamed into place, so a shard is
    complete or absent (and two processes writing the same shard write the same bytes); read back
    memory-mapped. Without one, the rows stay in memory."""

    def __init__(self, count, shard, names, folder=None, key=None):
        self.count, self.shard, self.names, self.folder, self.key = int(count), int(shard), tuple(names), folder, key
        self._memory = {} if folder is None else None

    def __len__(self):
        return -(-self.count // self.shard)

    def bounds(self, i):
        return i * self.shard, min((i + 1) * self.shard, self.count)

    def _path(self, name, i):
        return os.path.join(self.folder, f"{name}-{i:06d}.npy")

    def done(self, i):
        if self._memory is not None:
            return i in self._memory
        return all(os.path.exists(self._path(name, i)) for name in self.names)

    def put(self, i, rows):
        if self._memory is not None:
            self._memory[i] = rows
            return
        if os.path.islink(self.folder):
            raise ValueError(f"{self.folder} is a symbolic link; refusing to write a scan cache through it")
        if not os.path.isdir(self.folder):
            os.makedirs(self.folder, exist_ok=True)
            record = {"count": self.count, "shard": self.shard, "names": list(self.names), "key": self.key}
            atomic_write(os.path.join(self.folder, "scan.json"),
                         lambda f: f.write(json.dumps(record, indent=1).encode()), overwrite=True)
        for name in self.names:
            atomic_write(self._path(name, i), lambda f, a=np.ascontiguousarray(rows[name]): np.save(f, a),
                         overwrite=True)

    def get(self, i, name):
        """Shard ``i`` of output ``name`` (memory-mapped when on disk)."""
        if self._memory is not None:
            return self._memory[i][name]
        return np.load(self._path(name, i), mmap_mode="r")

    def chunks(self, *names):
        """(first image, rows of each of ``names``) for every shard in order, one shard in memory at a time."""
        for i in range(len(self)):
            yield (self.bounds(i)[0],) + tuple(self.get(i, name) for name in names)

    def take(self, name, index):
        """The rows of images ``index`` (a list of indices), in that order."""
        index = np.asarray(index, np.int64)
        out = None
        for i in np.unique(index // self.shard):
            rows = self.get(int(i), name)
            here = np.flatnonzero(index // self.shard == i)
            if out is None:
                out = np.empty((len(index),) + rows.shape[1:], rows.dtype)
            out[here] = rows[index[here] - i * self.shard]
        return out

    def array(self, name):
        """All rows of output ``name`` as one (count, ...) array in memory."""
        return np.concatenate([np.asarray(rows) for _, rows in self.chunks(name)])


# ----- filling the stores -----------------------------------------------------------------------


def model_key(model, layer=None):
    """A digest of what ``layer``'s output depends on: the model's kind, input shape and preprocessing,
    and the configuration, parameters and buffers of every layer up to ``layer`` (of all layers
    when the model does not run them in sequence, or for None). Read in place, not copied."""
    digest = hashlib.sha256(repr((model.describe(), tuple(model.input_shape or ()),
                                  sorted(model.preprocessing.to_dict().items()))).encode())
    layers = model.layers()
    if layer is not None and model.sequential:
        layers = layers[: model.layer_names.index(layer) + 1]
    for name, module in layers:
        digest.update(f"{name}:{module!r}".encode())
        arrays = [(k, p.data) for k, p in module.named_parameters()] + list(module.named_buffers())
        for key, value in arrays:
            array = np.ascontiguousarray(to_host(value))
            digest.update(f"{key}:{array.dtype.str}:{array.shape}".encode())
            digest.update(memoryview(array.reshape(-1)).cast("B"))
    return digest.hexdigest()


def activation_bytes(model, images, layer):
    """Bytes of every layer output up to ``layer`` for one image (``images[0]``): about what a
    forward pass holds per image of a batch."""
    x = model.preprocessing.normalize(images[:1])
    names = model.layer_names
    names = names[: names.index(layer) + 1] if model.sequential else [layer]
    with minigrad.no_grad():
        outputs = model.extract(minigrad.tensor(x), names)
    return x.nbytes + sum(int(np.prod(out.shape)) * out.data.dtype.itemsize for out in outputs.values())


def batch_size_for(model, images, layer, memory=MEMORY):
    """How many images per forward pass through ``layer`` fit ``memory`` bytes of activations (at
    least 1, at most :data:`MAX_BATCH`)."""
    return int(max(1, min(MAX_BATCH, memory // activation_bytes(model, images, layer))))


def _store_for(model, images, work, batch, shard, fingerprint, keys):
    names = work.names
    if not isinstance(images, FolderImages):
        return Store(len(images), shard, names)
    layer = work.layer
    if layer is not None and layer not in keys:
        keys[layer] = model_key(model, layer)
    key = {"format": FORMAT, "work": work.key(), "model": keys.get(layer), "images": fingerprint,
           "batch": batch, "shard": shard, "backend": minigrad.get_backend()}
    digest = hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()[:24]
    name = f"{work.key()['work']}-{digest}"
    if images.cache is False:
        folder = tempfile.mkdtemp(prefix="minigrad-scan-")
        store = Store(len(images), shard, names, os.path.join(folder, name), key)
        weakref.finalize(store, shutil.rmtree, folder, True)
        return store
    return Store(len(images), shard, names, os.path.join(cache_root(images.cache), name), key)


def _run_shard(model, read, labels, works, stores, i, batch):
    """Compute shard ``i`` of each store that lacks it, batch by batch (yielding each batch's size),
    and store it after its last batch. ``read(a, b)``: the pixels of images a..b-1; ``labels``:
    the shard's labels, or None."""
    start, stop = stores[0].bounds(i)
    lacking = [(work, store) for work, store in zip(works, stores) if not store.done(i)]
    shards = [{} for _ in lacking]
    for first in range(start, stop, batch):
        last = min(first + batch, stop)
        pixels = read(first, last)
        for shard, (work, _) in zip(shards, lacking):
            part = None if labels is None else labels[first - start: last - start]
            for name, rows in work(model, pixels, part).items():
                if name not in shard:
                    shard[name] = np.empty((stop - start,) + rows.shape[1:], rows.dtype)
                shard[name][first - start: last - start] = rows
        yield last - first
    for shard, (_, store) in zip(shards, lacking):
        store.put(i, shard)


def scan(model, dataset, works, batch_size, description="scan", verbose=None):
    """One :class:`Store` per work in ``works``, holding its rows for every image of ``dataset``
    (a :class:`~methods.lib.datasets.Dataset`), ``batch_size`` images per forward pass.

    Only the shards a store lacks are computed, each image read once for all the works that lack
    it. On Ctrl-C the finished shards stay (on disk for a folder) and a message says how to resume."""
    images = dataset.images
    if len(images) == 0:
        raise ValueError("the dataset has no images")
    shard = batch_size * max(1, SHARD_IMAGES // batch_size)
    fingerprint = images.fingerprint() if isinstance(images, FolderImages) else None
    keys = {}
    stores = [_store_for(model, images, work, batch_size, shard, fingerprint, keys) for work in works]
    missing = [i for i in range(len(stores[0])) if not all(store.done(i) for store in stores)]
    if not missing:
        return stores
    total = sum(stop - start for start, stop in map(stores[0].bounds, missing))
    cached = len(images) - total
    if cached and (verbose or (verbose is None and sys.stderr.isatty())):
        print(f"{description}: {cached} of {len(images)} images already scanned (in {stores[0].folder})",
              file=sys.stderr)
    executor = _EXECUTOR.get()
    if executor is not None and isinstance(images, FolderImages):
        sizes = executor.shards(dataset, works, stores, missing, batch_size)
    else:
        sizes = (size for i in missing
                 for size in _run_shard(model, lambda a, b: images[a:b], _labels(dataset, stores[0], i), works,
                                        stores, i, batch_size))
    try:
        with contextlib.closing(sizes):
            for _ in Progress(sizes, description, total=total, verbose=verbose, unit="images", size=int):
                pass
    except KeyboardInterrupt:
        if stores[0].folder is not None and images.cache is not False:
            kept = sum(all(store.done(i) for store in stores) for i in range(len(stores[0])))
            print(f"{description} interrupted: {kept} of {len(stores[0])} shards are kept in {stores[0].folder}; "
                  "run the same command again to resume", file=sys.stderr)
        raise
    return stores


# ----- on a Dask cluster ------------------------------------------------------------------------


class _Distributed:
    def __init__(self, client, model_name, seed, retries):
        self.client, self.model_name, self.seed, self.retries = client, model_name, seed, retries

    def shards(self, dataset, works, stores, missing, batch):
        """Submit one task per missing shard; yield each one's image count as it completes (Dask
        retries failed tasks; any still failing raises here, and the rest are cancelled)."""
        from methods.lib.cluster import as_completed

        backend = minigrad.get_backend()
        futures = []
        for i in missing:
            start, stop = stores[0].bounds(i)
            futures.append(self.client.submit(_shard_task, self.model_name, self.seed, backend,
                                              dataset.images.files[start:stop], _labels(dataset, stores[0], i), start,
                                              works, stores, i, batch, pure=False, retries=self.retries))
        try:
            for future in as_completed(futures):
                yield future.result()
        finally:
            self.client.cancel(futures)


def _shard_task(model_name, seed, backend, files, labels, start, works, stores, i, batch):
    """One shard, on a worker: the model loaded once per worker process, the shard's files read
    there, the rows written to the shared store. Returns how many images it scanned."""
    from methods.lib.cluster import worker_model

    model = worker_model(model_name, seed)
    with minigrad.backend.using_backend(backend):
        for _ in _run_shard(model, lambda a, b: read_pixels(model, files[a - start: b - start]), labels, works,
                            stores, i, batch):
            pass
    return len(files)


def _labels(dataset, store, i):
    """The labels of shard ``i``, or None."""
    start, stop = store.bounds(i)
    return None if dataset.labels is None else np.asarray(dataset.labels[start:stop])


@contextlib.contextmanager
def distributed(client, model_name, seed=0, retries=2):
    """Inside this block, the shards of every folder scan are computed on the Dask cluster behind
    ``client`` (see :func:`methods.lib.cluster.connect`), one task per shard, each worker loading
    ``model_name`` once (after ``minigrad.manual_seed(seed)``, as the command line does: the model
    this process scans with must be that one). Workers write the shards into the scan cache
    themselves, so it must be a folder they all see (any folder, for a local cluster); a task that
    fails is retried ``retries`` times, and one whose worker died is re-run by Dask."""
    token = _EXECUTOR.set(_Distributed(client, model_name, seed, retries))
    try:
        yield
    finally:
        _EXECUTOR.reset(token)


# ----- reducing the rows ------------------------------------------------------------------------


class TopK:
    """The ``k`` smallest keys seen so far in each of ``rows`` lists, with their indices, smallest
    first and ties to the lower index (a stable order, whatever the batches were). Holds
    ``rows * (k + batch)`` entries at most."""

    def __init__(self, k, rows=1):
        self.k = int(k)
        self.keys = np.empty((rows, 0), np.float64)
        self.index = np.empty((rows, 0), np.int64)

    def push(self, keys, index):
        """Add ``keys`` (rows, n), or any shape for one row, for the items ``index``: one per key, or
        (n,) shared by every row."""
        keys = np.asarray(keys, np.float64).reshape(self.keys.shape[0], -1)
        index = np.asarray(index, np.int64)
        index = index.reshape(keys.shape) if index.size == keys.size else np.broadcast_to(index, keys.shape)
        keys = np.concatenate([self.keys, keys], 1)
        index = np.concatenate([self.index, index], 1)
        order = np.lexsort((index, keys), axis=1)[:, :self.k]
        self.keys, self.index = np.take_along_axis(keys, order, 1), np.take_along_axis(index, order, 1)
