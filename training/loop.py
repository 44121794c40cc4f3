"""The one training loop of the shipped models: Fashion-MNIST from its IDX files, synchronous
data-parallel workers, per-epoch checkpoints a run can resume from, the log beside the weights,
and the command line ``python -m training MODEL``.

Each shipped model registers a :class:`Trainable` (its name, how to build it, its recipe's
defaults and its own options): ``training/fashion_vgg.py`` and ``training/bagnet.py``.

Data: the Fashion-MNIST IDX files (``train-images-idx3-ubyte.gz`` and friends; Debian's
``dataset-fashion-mnist`` package installs them in the default ``--data`` folder) are parsed
here with NumPy, no downloader. ``--sample`` trains instead on the 2,000-image sample shipped in
``methods/data`` (the first 1,600 images for training, the rest for testing): that is for the
test suite and for machines without the dataset, not for shipped weights.

Recipe: Adam, the learning rate annealed to zero along a half cosine over all steps,
cross-entropy loss, parameters initialized from ``--seed``, each batch split across
``--workers`` single-threaded processes (synchronous data parallelism). Why processes and not
threads: on a machine shared with other jobs, thread pools that wait on each other's barriers
(OpenBLAS, Numba's parallel loops) run many times slower than independent single-threaded
processes. Dropout masks depend on the number of workers, so ``--workers`` is part of the recipe.

Checkpoints: the weights are written after every epoch, with a ``.state`` file beside them (Adam's
moments, the random generator, the history so far); ``--resume`` continues an interrupted run
from its last complete epoch exactly as if it had not stopped, and the ``.state`` file is removed
when the last epoch is done.
"""

import argparse
import gzip
import hashlib
import importlib
import json
import math
import os
import sys
import time
from collections import namedtuple

import numpy as np

from methods.lib.training import augment, minibatches
from weights import safetensors
from weights.errors import CheckpointError

__all__ = ["DEFAULT_DATA", "FILES", "TRAINABLE", "Display", "Trainable", "evaluate", "load_fashion_mnist",
           "load_sample_split", "main", "read_idx", "register", "train"]

DEFAULT_DATA = "/usr/share/datasets/fashion-mnist"
REPOSITORY = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
WEIGHTS_DIR = os.path.join(REPOSITORY, "weights")
FILES = {
    "train": ("train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz"),
    "test": ("t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz"),
}

# IDX element types (the third byte of the magic number) -> big-endian NumPy dtype.
_IDX_TYPES = {0x08: ">u1", 0x09: ">i1", 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}

#: One trainable model: ``name`` (the weights file is ``weights/<name>.safetensors``), ``build``
#: ("module:callable" taking the keyword arguments ``kwargs`` and returning the network; a string,
#: so worker processes can build their replicas), ``defaults`` (the recipe: epochs, batch_size, lr,
#: flip, shift, workers) and ``options`` ({model keyword: (type, help)} that the command line
#: exposes as ``--keyword``).
Trainable = namedtuple("Trainable", ["name", "build", "kwargs", "defaults", "options", "description"])

#: name -> :class:`Trainable`, filled by :func:`register`.
TRAINABLE = {}

RECIPE = {"epochs": 8, "batch_size": 128, "lr": 1e-3, "flip": False, "shift": 0, "workers": 4}


def register(name, build, kwargs=None, defaults=None, options=None, description=""):
    """Make ``name`` trainable by :func:`train` and ``python -m training``."""
    unknown = set(defaults or {}) - set(RECIPE)
    if unknown:
        raise ValueError(f"unknown recipe keys {sorted(unknown)}; known: {sorted(RECIPE)}")
    TRAINABLE[name] = Trainable(name, build, dict(kwargs or {}), {**RECIPE, **(defaults or {})}, dict(options or {}),
                                description)
    return TRAINABLE[name]


def _build(build, kwargs):
    module, attribute = build.split(":")
    return getattr(importlib.import_module(module), attribute)(**kwargs)


# ----- data --------------------------------------------------------------------------------------


def read_idx(path):
    """Read an IDX file (LeCun's MNIST format; gzipped when the name ends in .gz) into an array.

    Format: two zero bytes, a type byte, a dimension count d, then d big-endian uint32 sizes and
    the data in C order. Every size is checked against the file's length, so a truncated or
    foreign file raises ``ValueError`` naming it instead of yielding garbage.
    """
    opener = gzip.open if str(path).endswith(".gz") else open
    try:
        with opener(path, "rb") as f:
            raw = f.read()
    except FileNotFoundError:
        raise FileNotFoundError(f"{path}: no such file") from None
    except (OSError, EOFError) as error:
        raise ValueError(f"{path}: cannot read the file ({error})") from None
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0 or raw[2] not in _IDX_TYPES:
        raise ValueError(f"{path}: not an IDX file (bad magic number {raw[:4].hex()})")
    ndim = raw[3]
    if len(raw) < 4 + 4 * ndim:
        raise ValueError(f"{path}: truncated IDX header")
    shape = tuple(int(n) for n in np.frombuffer(raw, ">u4", ndim, 4))
    dtype = np.dtype(_IDX_TYPES[raw[2]])
    expected = 4 + 4 * ndim + math.prod(shape) * dtype.itemsize
    if len(raw) != expected:
        raise ValueError(f"{path}: IDX header promises {expected} bytes for shape {shape}, the file has {len(raw)}")
    data = np.frombuffer(raw, dtype, offset=4 + 4 * ndim).reshape(shape)
    return data.astype(dtype.newbyteorder("="), copy=False)


def _sha256(path):
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def load_fashion_mnist(folder=DEFAULT_DATA):
    """``{"train": (images, labels), "test": (images, labels)}`` from the four IDX files in
    ``folder``, plus ``"sha256"``: {file name: digest}. Images uint8 (N, 28, 28), labels int64."""
    missing = [name for pair in FILES.values() for name in pair if not os.path.exists(os.path.join(folder, name))]
    if missing:
        raise FileNotFoundError(
            f"Fashion-MNIST not found in {folder} (missing {', '.join(missing)}); install Debian's "
            "dataset-fashion-mnist package, pass --data FOLDER holding the IDX files, or use --sample"
        )
    out, digests = {}, {}
    for split, (images_name, labels_name) in FILES.items():
        images = read_idx(os.path.join(folder, images_name))
        labels = read_idx(os.path.join(folder, labels_name))
        if images.ndim != 3 or images.shape[1:] != (28, 28) or images.dtype != np.uint8:
            raise ValueError(f"{images_name}: expected uint8 images of shape (N, 28, 28), got {images.dtype} {images.shape}")
        if labels.shape != images.shape[:1] or labels.max() > 9:
            raise ValueError(f"{labels_name}: expected {images.shape[0]} labels in 0..9, got shape {labels.shape}")
        out[split] = (images, labels.astype(np.int64))
        for name in (images_name, labels_name):
            digests[name] = _sha256(os.path.join(folder, name))
    out["sha256"] = digests
    return out


def load_sample_split(n_train=1600):
    """The shipped 2,000-image sample split into a small training and test set (for tests and CI)."""
    from methods.data import fashion_sample

    images, labels = fashion_sample()
    return {"train": (images[:n_train], labels[:n_train]), "test": (images[n_train:], labels[n_train:]),
            "sha256": {"methods/data/fashion_mnist_sample.npz": _sha256(
                os.path.join(REPOSITORY, "methods", "data", "fashion_mnist_sample.npz"))}}


# ----- progress ----------------------------------------------------------------------------------


class Display:
    """A one-line progress display (rewritten in place on a terminal, every ``every`` seconds as
    plain lines otherwise, so logs of background runs stay readable)."""

    def __init__(self, stream=sys.stderr, quiet=False, every=30.0):
        self.stream, self.quiet = stream, quiet
        self.tty = hasattr(stream, "isatty") and stream.isatty()
        self.every = 0.25 if self.tty else every
        self.last = -math.inf

    def update(self, text, force=False):
        now = time.perf_counter()
        if self.quiet or not (force or now - self.last >= self.every):
            return
        self.last = now
        self.stream.write(("\r" + text + "\033[K") if self.tty else text + "\n")
        self.stream.flush()

    def line(self, text):
        if self.quiet:
            return
        if self.tty:
            self.stream.write("\r\033[K")
        self.stream.write(text + "\n")
        self.stream.flush()


# ----- data-parallel workers ---------------------------------------------------------------------


class _Replica:
    """One copy of the model that computes a shard's loss and gradients.

    Data parallelism (Krizhevsky 2014's "one weird trick", synchronous): every batch is split
    into one shard per worker; each replica runs forward and backward on its shard with the
    current parameters and returns the gradient of (sum of its shard's losses) / (batch size),
    so the gradients of all shards add up to the gradient of the batch mean. The optimizer
    lives in the parent only. Dropout masks are drawn from a generator seeded by
    (seed, step, shard), so a run repeats exactly for a given number of workers.
    """

    def __init__(self, model):
        self.model = model
        self.params = list(model.parameters())

    def run(self, kind, params, images, labels, total, seed):
        """kind "train": (loss sum / total, correct, gradients); "eval": (loss sum, correct, None)."""
        import minigrad
        from minigrad import functional as F

        for p, value in zip(self.params, params):
            p.data[...] = value
        if kind == "eval":
            self.model.eval()
            with minigrad.no_grad():
                logits = self.model(minigrad.tensor(self.model.preprocess(images)))
                loss = F.cross_entropy(logits, labels, reduction="sum")
            return float(loss.item()), int((logits.numpy().argmax(axis=1) == labels).sum()), None
        self.model.train()
        minigrad.manual_seed(seed)
        logits = self.model(minigrad.tensor(self.model.preprocess(images)))
        loss = F.cross_entropy(logits, labels, reduction="sum") * (1.0 / total)
        for p in self.params:
            p.grad = None
        loss.backward()
        grads = [np.zeros_like(p.data) if p.grad is None else p.grad for p in self.params]
        return float(loss.item()), int((logits.numpy().argmax(axis=1) == labels).sum()), grads


def _serve(conn, build, model_kwargs, backend):
    """A worker process: build a replica, answer run() requests until it receives None."""
    import minigrad

    if backend is not None:
        minigrad.set_backend(backend)
    replica = _Replica(_build(build, model_kwargs))
    conn.send("ready")
    while True:
        try:
            request = conn.recv()
        except (EOFError, OSError):  # the parent is gone
            break
        if request is None:
            break
        try:
            conn.send(("ok", replica.run(*request)))
        except Exception as error:  # report to the parent rather than dying silently
            conn.send(("error", f"{type(error).__name__}: {error}"))
    conn.close()


class _Workers:
    """``workers`` replicas: in this process (training ``model`` itself) when there is one, else in
    spawned processes.

    Processes are spawned rather than forked so no thread pool (OpenBLAS, Numba) is inherited
    half-initialized. Each child should be given one BLAS/Numba thread (see :func:`main`).
    """

    def __init__(self, workers, model, build, backend):
        self.local, self.procs, self.conns = None, [], []
        if workers == 1:
            self.local = _Replica(model)
            return
        import multiprocessing

        context = multiprocessing.get_context("spawn")
        for _ in range(workers):
            parent, child = context.Pipe()
            proc = context.Process(target=_serve, args=(child, build, model.config, backend), daemon=True)
            proc.start()
            self.procs.append(proc)
            self.conns.append(parent)
        for conn in self.conns:
            conn.recv()

    def __len__(self):
        return 1 if self.local is not None else len(self.conns)

    def map(self, requests):
        """Run one request per worker (fewer is fine) and return the results in order."""
        if self.local is not None:
            return [self.local.run(*r) for r in requests]
        for conn, request in zip(self.conns, requests):
            conn.send(request)
        results = []
        for conn, _ in zip(self.conns, requests):
            status, value = conn.recv()
            if status != "ok":
                raise RuntimeError(f"a training worker failed: {value}")
            results.append(value)
        return results

    def close(self):
        for conn in self.conns:
            try:
                conn.send(None)
            except OSError:
                pass
        for proc in self.procs:
            proc.join(timeout=10)
            if proc.is_alive():
                proc.terminate()
        self.procs, self.conns = [], []


def evaluate(model, images, labels, batch_size=500, workers=None):
    """(mean cross-entropy, accuracy) of ``model`` in eval mode on uint8 ``images``.

    With ``workers`` (as :func:`train` makes them), each chunk is split across the replicas."""
    import minigrad

    params = [p.data for p in model.parameters()]
    workers = workers or _Workers(1, model, None, None)
    was_training = model.training
    total_loss, correct = 0.0, 0
    with minigrad.no_grad():
        for start in range(0, len(images), batch_size):
            chunk = np.arange(start, min(start + batch_size, len(images)))
            shards = [s for s in np.array_split(chunk, len(workers)) if len(s)]
            for loss, right, _ in workers.map([("eval", params, images[s], labels[s], len(chunk), None)
                                               for s in shards]):
                total_loss += loss
                correct += right
    model.train(was_training)
    return total_loss / len(images), correct / len(images)


# ----- training ----------------------------------------------------------------------------------


def train(model_name="fashion-vgg", data=None, epochs=None, batch_size=None, lr=None, seed=0, flip=None, shift=None,
          output=None, log=None, overwrite=False, backend=None, model_kwargs=None, display=None,
          max_steps=None, workers=None, resume=False):
    """Train ``model_name`` (a registered :class:`Trainable`) on ``data`` (as
    :func:`load_fashion_mnist` returns) and return a summary dict (per-epoch history, images per
    second, test accuracy, the model itself). Recipe values left None take the model's defaults.

    ``output`` (a .safetensors path) is written after every epoch, with ``<output>.state`` for
    ``resume``; ``log`` (a text file) at the end; neither replaces an existing file unless
    ``overwrite`` (or ``resume``, which continues the run the state file records). ``backend``
    picks minigrad's CPU kernels ("numba" or "reference"; None keeps the default). ``workers`` > 1
    splits every batch across that many processes. ``max_steps`` stops early (tests).
    ``model_kwargs`` override the architecture (tests use tiny ones).
    """
    import minigrad

    if model_name not in TRAINABLE:
        raise ValueError(f"unknown model {model_name!r}; this script trains: {', '.join(TRAINABLE)}")
    spec = TRAINABLE[model_name]
    given = {"epochs": epochs, "batch_size": batch_size, "lr": lr, "flip": flip, "shift": shift, "workers": workers}
    recipe = {k: spec.defaults[k] if v is None else v for k, v in given.items()}
    if int(recipe["workers"]) < 1:
        raise ValueError(f"workers must be at least 1, got {recipe['workers']}")
    if resume and output is None:
        raise ValueError("resume needs the output file of the run to continue")
    state = _state_path(output) if output is not None else None
    if resume and not os.path.exists(state):
        raise CheckpointError(f"nothing to resume: {state} does not exist (the run finished, or never started)")
    for path in (output, log):
        if path is not None and not (overwrite or resume) and os.path.lexists(path):
            raise CheckpointError(f"{path} already exists; refusing to overwrite it (pass --force, or --resume)")
    previous_backend = minigrad.get_backend()
    if backend is not None:
        minigrad.set_backend(backend)
    try:
        return _train(spec, data, recipe, seed, output, log, backend, {**spec.kwargs, **(model_kwargs or {})},
                      display or Display(), max_steps, resume)
    finally:
        minigrad.set_backend(previous_backend)  # the choice was for this run only


def _train(spec, data, recipe, seed, output, log, backend, model_kwargs, display, max_steps, resume):
    import minigrad
    from minigrad import optim

    minigrad.manual_seed(seed)
    rng = np.random.default_rng(seed)
    model = _build(spec.build, model_kwargs).train()
    params = list(model.parameters())
    optimizer = optim.Adam(params, lr=recipe["lr"])
    (train_x, train_y), (test_x, test_y) = data["train"], data["test"]
    batch_size, epochs, lr = recipe["batch_size"], recipe["epochs"], recipe["lr"]
    steps_per_epoch = len(train_x) // batch_size
    if steps_per_epoch == 0:
        raise ValueError(f"batch size {batch_size} is larger than the {len(train_x)} training images")
    total_steps = steps_per_epoch * epochs if max_steps is None else min(max_steps, steps_per_epoch * epochs)
    history, step, train_seconds, losses = [], 0, 0.0, []
    if resume:
        history, step, train_seconds, losses = _restore(_state_path(output), output, model, optimizer, rng,
                                                        recipe, seed)
        display.line(f"resuming {spec.name} after epoch {len(history)} (step {step})")
    display.line(f"training {spec.name} ({sum(p.data.size for p in params):,} parameters) on "
                 f"{len(train_x):,} images, testing on {len(test_x):,}; {epochs} epochs of {steps_per_epoch} "
                 f"batches of {batch_size}; kernels: {minigrad.get_backend()}; {recipe['workers']} worker(s)")
    pool = _Workers(int(recipe["workers"]), model, spec.build, backend)
    summary = None
    try:
        for epoch in range(len(history) + 1, epochs + 1):
            seen, loss_sum, correct, epoch_start = 0, 0.0, 0, time.perf_counter()
            for index in minibatches(len(train_x), batch_size, rng):
                if step >= total_steps:
                    break
                optimizer.param_groups[0]["lr"] = lr * 0.5 * (1.0 + math.cos(math.pi * step / total_steps))
                images, labels = augment(train_x[index], rng, recipe["flip"], recipe["shift"]), train_y[index]
                shards = [s for s in np.array_split(np.arange(len(index)), len(pool)) if len(s)]
                values = [p.data for p in params]
                results = pool.map([("train", values, images[s], labels[s], len(index), [seed, step, k])
                                    for k, s in enumerate(shards)])
                value = sum(r[0] for r in results)
                if not math.isfinite(value):
                    raise FloatingPointError(f"the loss became {value} at step {step}; lower --lr")
                for i, p in enumerate(params):
                    grad = results[0][2][i]
                    for r in results[1:]:
                        grad = grad + r[2][i]
                    p.grad = grad
                optimizer.step()
                losses.append(value)
                step += 1
                seen += len(index)
                loss_sum += value * len(index)
                correct += sum(r[1] for r in results)
                elapsed = time.perf_counter() - epoch_start
                display.update(f"epoch {epoch}/{epochs} {seen:>6}/{steps_per_epoch * batch_size} "
                               f"loss {loss_sum / seen:.4f} acc {correct / seen:.4f} "
                               f"{seen / elapsed:.0f} img/s lr {optimizer.param_groups[0]['lr']:.2e}")
            if seen == 0:
                break
            epoch_seconds = time.perf_counter() - epoch_start
            train_seconds += epoch_seconds
            test_loss, test_acc = evaluate(model, test_x, test_y, workers=pool)
            record = {"epoch": epoch, "train_loss": loss_sum / seen, "train_accuracy": correct / seen,
                      "test_loss": test_loss, "test_accuracy": test_acc, "seconds": epoch_seconds,
                      "images_per_second": seen / epoch_seconds}
            history.append(record)
            display.line(f"epoch {epoch}/{epochs}: train loss {record['train_loss']:.4f} "
                         f"acc {record['train_accuracy']:.4f} | test loss {test_loss:.4f} acc {test_acc:.4f} | "
                         f"{epoch_seconds:.1f} s, {record['images_per_second']:.0f} img/s")
            summary = _summary(spec.name, model, history, train_seconds, recipe, seed, data, minigrad.get_backend())
            if output is not None:
                safetensors.save_file(model.state_dict(), output, _metadata(summary, model), overwrite=True)
                _save_state(_state_path(output), optimizer, params, rng, summary, step, losses)
    finally:
        pool.close()
    if summary is None:
        raise ValueError("no epoch was completed (max_steps is 0, or the run was already complete)")
    model.eval()
    if output is not None and step >= total_steps and os.path.exists(_state_path(output)):
        os.remove(_state_path(output))  # the run is complete: nothing left to resume
    summary["model"], summary["losses"] = model, losses
    if log is not None:
        _write_log(log, summary, overwrite=True)
    return summary


# ----- checkpoints to resume from ----------------------------------------------------------------


def _state_path(output):
    return os.fspath(output) + ".state"


def _save_state(path, optimizer, params, rng, summary, step, losses):
    """Adam's moments and step count, the generator's state, the history and losses so far."""
    tensors, steps = {}, []
    for i, p in enumerate(params):
        moments = optimizer.state.get(id(p), {})
        steps.append(int(moments.get("step", 0)))
        if moments:
            tensors[f"exp_avg.{i}"] = np.asarray(moments["exp_avg"])
            tensors[f"exp_avg_sq.{i}"] = np.asarray(moments["exp_avg_sq"])
    meta = {"step": str(step), "adam_steps": json.dumps(steps), "rng": json.dumps(rng.bit_generator.state),
            "history": json.dumps(summary["history"]), "train_seconds": repr(summary["train_seconds"]),
            "recipe": json.dumps(summary["recipe"]), "losses": json.dumps(losses)}
    safetensors.save_file(tensors, path, meta, overwrite=True)


def _restore(path, output, model, optimizer, rng, recipe, seed):
    """Load what :func:`_save_state` wrote (and the weights of that epoch) into a fresh run."""
    from minigrad.models.base import adopt_state

    with safetensors.SafetensorsFile(path) as f:
        meta = dict(f.metadata)
        moments = {k: np.array(f[k]) for k in f.keys()}
    saved = json.loads(meta["recipe"])
    for key in ("epochs", "batch_size", "lr", "flip", "shift", "workers"):
        if saved[key] != recipe[key]:
            raise ValueError(f"cannot resume: the run was started with {key}={saved[key]!r}, not {recipe[key]!r}")
    if saved["seed"] != seed:
        raise ValueError(f"cannot resume: the run was started with seed={saved['seed']}, not {seed}")
    with safetensors.SafetensorsFile(output) as f:
        adopt_state(model, {k: np.array(f[k]) for k in f.keys()})
    for i, (p, count) in enumerate(zip(model.parameters(), json.loads(meta["adam_steps"]))):
        if count:
            optimizer.state[id(p)] = {"step": count, "exp_avg": moments[f"exp_avg.{i}"],
                                      "exp_avg_sq": moments[f"exp_avg_sq.{i}"]}
    rng.bit_generator.state = json.loads(meta["rng"])
    return json.loads(meta["history"]), int(meta["step"]), float(meta["train_seconds"]), json.loads(meta["losses"])


# ----- records -----------------------------------------------------------------------------------


def _summary(model_name, model, history, train_seconds, recipe, seed, data, backend):
    images = sum(r["images_per_second"] * r["seconds"] for r in history)
    return {
        "model_name": model_name, "config": model.config, "history": history,
        "train_seconds": train_seconds, "images_per_second": images / train_seconds,
        "seconds_per_epoch": train_seconds / len(history), "test_accuracy": history[-1]["test_accuracy"],
        "test_images": len(data["test"][0]), "train_images": len(data["train"][0]),
        "recipe": {"optimizer": "Adam", "lr": recipe["lr"], "schedule": "cosine to 0 per step",
                   "batch_size": recipe["batch_size"], "epochs": recipe["epochs"], "epochs_run": len(history),
                   "seed": seed, "flip": recipe["flip"], "shift": recipe["shift"],
                   **({"dropout": model.config["dropout"]} if "dropout" in model.config else {}),
                   "loss": "cross_entropy", "workers": recipe["workers"]},
        "backend": backend, "sha256": data["sha256"],
    }


def _metadata(summary, model):
    p = model.preprocessing
    return {
        "arch": summary["model_name"],
        "format": "minigrad state_dict",
        "config": json.dumps(summary["config"]),
        "preprocessing": json.dumps({"channels": p.channels, "range": list(p.range), "mean": p.mean.tolist(),
                                     "std": p.std.tolist(), "input": "uint8 (N, 28, 28), 0 = background, 255 = ink"}),
        "labels": json.dumps(list(model.labels)),
        "class_list": "fashion-mnist",
        "source": "trained by minigrad: python -m training " + summary["model_name"],
        "dataset": "Fashion-MNIST (Xiao, Rasul & Vollgraf 2017), MIT licence",
        "dataset_sha256": json.dumps(summary["sha256"]),
        "recipe": json.dumps(summary["recipe"]),
        "test_accuracy": f"{summary['test_accuracy']:.4f}",
        "test_images": str(summary["test_images"]),
        "train_seconds": f"{summary['train_seconds']:.1f}",
        "images_per_second": f"{summary['images_per_second']:.1f}",
        "kernels": summary["backend"],
    }


def _write_log(path, summary, overwrite=False):
    lines = [f"# python -m training {summary['model_name']}",
             f"recipe: {json.dumps(summary['recipe'])}",
             f"architecture: {json.dumps(summary['config'])}",
             f"kernels: {summary['backend']}; numpy {np.__version__}; {os.cpu_count()} CPU cores",
             f"data: {summary['train_images']} training / {summary['test_images']} test images; "
             f"sha256 {json.dumps(summary['sha256'])}",
             "epoch  train_loss  train_acc  test_loss  test_acc  seconds  images/s"]
    for r in summary["history"]:
        lines.append(f"{r['epoch']:>5}  {r['train_loss']:>10.4f}  {r['train_accuracy']:>9.4f}  {r['test_loss']:>9.4f}  "
                     f"{r['test_accuracy']:>8.4f}  {r['seconds']:>7.1f}  {r['images_per_second']:>8.1f}")
    lines += [f"training time: {summary['train_seconds']:.1f} s ({summary['seconds_per_epoch']:.1f} s per epoch, "
              f"{summary['images_per_second']:.1f} images/s)",
              f"final test accuracy: {summary['test_accuracy']:.4f} on {summary['test_images']} test images"]
    text = "\n".join(lines) + "\n"
    safetensors.atomic_write(path, lambda f: f.write(text.encode("utf-8")), overwrite=overwrite)


# ----- command line ------------------------------------------------------------------------------


def _parser():
    parser = argparse.ArgumentParser(prog="python -m training",
                                     description="Train one of the shipped models with minigrad.")
    models = parser.add_subparsers(dest="model", metavar="MODEL", required=True)
    for spec in TRAINABLE.values():
        d = spec.defaults
        sub = models.add_parser(spec.name, help=spec.description, description=spec.description)
        sub.add_argument("--data", default=DEFAULT_DATA, help="folder with the Fashion-MNIST IDX .gz files")
        sub.add_argument("--sample", action="store_true",
                         help="train on the shipped 2,000-image sample instead (1,600 train / 400 test)")
        sub.add_argument("--epochs", type=int, default=d["epochs"], help=f"default {d['epochs']}")
        sub.add_argument("--batch-size", type=int, default=d["batch_size"], help=f"default {d['batch_size']}")
        sub.add_argument("--lr", type=float, default=d["lr"],
                         help=f"Adam's initial learning rate, cosine-annealed to 0 (default {d['lr']})")
        sub.add_argument("--seed", type=int, default=0)
        sub.add_argument("--flip", action=argparse.BooleanOptionalAction, default=d["flip"],
                         help="random horizontal flips")
        sub.add_argument("--shift", type=int, default=d["shift"],
                         help=f"random translations of up to this many pixels (default {d['shift']})")
        sub.add_argument("--workers", type=int, default=d["workers"],
                         help=f"processes that share each batch (data parallel; default {d['workers']})")
        for name, (kind, text) in spec.options.items():
            sub.add_argument("--" + name.replace("_", "-"), dest=name, type=kind, default=spec.kwargs[name],
                             help=f"{text} (default {spec.kwargs[name]})")
        sub.add_argument("--max-steps", type=int, default=None, help="stop after this many batches")
        sub.add_argument("--backend", choices=("numba", "reference"), default=None,
                         help="minigrad's CPU kernels (default: $MINIGRAD_BACKEND, else numba when installed)")
        sub.add_argument("--output", default=None,
                         help=f"weights file (default weights/{spec.name}.safetensors); written after every epoch")
        sub.add_argument("--log", default=None, help="log file (default: the output with .log)")
        sub.add_argument("--force", action="store_true", help="replace existing output and log files")
        sub.add_argument("--resume", action="store_true", help="continue an interrupted run from its last epoch")
        sub.add_argument("--quiet", action="store_true", help="no progress display")
    return parser


def main(argv=None):
    parser = _parser()
    args = parser.parse_args(argv)
    spec = TRAINABLE[args.model]
    if args.epochs < 1 or args.batch_size < 1 or args.workers < 1 or not args.lr > 0:
        parser.error("--epochs, --batch-size and --workers must be positive and --lr greater than 0")
    model_kwargs = {name: getattr(args, name) for name in spec.options}
    if args.workers > 1:
        # One thread per worker process: the workers are the parallelism, and thread pools that
        # oversubscribe the cores (or wait on each other's barriers) run many times slower.
        for var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS", "NUMBA_NUM_THREADS"):
            os.environ.setdefault(var, "1")
    output = args.output or os.path.join(WEIGHTS_DIR, f"{args.model}.safetensors")
    log = args.log or os.path.splitext(output)[0] + ".log"
    try:
        data = load_sample_split() if args.sample else load_fashion_mnist(args.data)
        summary = train(args.model, data, epochs=args.epochs, batch_size=args.batch_size, lr=args.lr,
                        seed=args.seed, flip=args.flip, shift=args.shift, output=output, log=log,
                        overwrite=args.force, backend=args.backend, display=Display(quiet=args.quiet),
                        max_steps=args.max_steps, workers=args.workers, model_kwargs=model_kwargs,
                        resume=args.resume)
    except (FileNotFoundError, ValueError, CheckpointError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    print(f"final test accuracy {summary['test_accuracy']:.4f} on {summary['test_images']} images; "
          f"{summary['train_seconds']:.1f} s of training ({summary['seconds_per_epoch']:.1f} s/epoch, "
          f"{summary['images_per_second']:.1f} images/s); wrote {output} and {log}")
    return 0
