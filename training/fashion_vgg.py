"""Train fashion-vgg, the small model that ships in weights/, with minigrad itself.

    python -m training fashion-vgg [--epochs 10] [--batch-size 128] [--seed 0]
                                        [--data /usr/share/datasets/fashion-mnist]
                                        [--output weights/fashion-vgg.safetensors] [--force]

Why it is here: the shipped ``fashion-vgg.safetensors`` must be reproducible from the repository
alone, and training it is also the project's end-to-end training benchmark (forward, backward,
optimizer step through minigrad's kernels), so the script reports images per second and time per
epoch and writes them, with the final test accuracy, to a log beside the weights.

Data: the Fashion-MNIST IDX files (``train-images-idx3-ubyte.gz`` and friends; Debian's
``dataset-fashion-mnist`` package installs them in the default ``--data`` folder) are parsed
here with NumPy, no downloader. ``--sample`` trains instead on the 2,000-image sample shipped in
``methods/data`` (the first 1,600 images for training, the rest for testing): that is for the
test suite and for machines without the dataset, not for the shipped weights.

Training recipe (the shipped file's defaults): Adam (lr 1e-3), the learning rate annealed to
zero along a half cosine over all steps, 8 epochs of batches of 128, dropout 0.1 after fc6 and
fc7, cross-entropy loss, parameters initialized from ``--seed`` 0, each batch split across
``--workers`` 4 single-threaded processes (synchronous data parallelism). Why processes and not
threads: on a machine shared with other jobs, thread pools that wait on each other's barriers
(OpenBLAS, Numba's parallel loops) run many times slower than independent single-threaded
processes, and the shipped file was trained on two cores shared with several other test runs.
Dropout masks depend on the number of workers, so ``--workers`` is part of the recipe.

Measured here (2 cores, NumPy 2.4, Numba 0.68; images per second over 40 training steps): the
shipped run averaged 348 (172 s per epoch, 23 minutes for 8 epochs) while sharing the cores with
other test runs. On the nearly idle machine: 828 with ``--workers 2`` (about 72 s per epoch),
705 with 4, 539 in one process with one Numba thread, 176 in one process with Numba's default two
threads, 431 in one process on the NumPy reference kernels. Each epoch ends
with the loss and accuracy on the test split; the weights are written after every epoch (so an
interrupted run leaves the last complete epoch), with metadata recording the architecture,
preprocessing, class names, recipe, dataset SHA-256s and results.

The shipped file and its log were made when this script was ``weights/train.py`` (its
metadata says ``python -m weights.train``); it moved here so that ``weights`` imports NumPy only.
"""

import argparse
import gzip
import hashlib
import json
import math
import os
import sys
import time

import numpy as np

from weights import safetensors
from weights.errors import CheckpointError

__all__ = ["read_idx", "load_fashion_mnist", "load_sample_split", "train", "main"]

MODELS = ("fashion-vgg",)
DEFAULT_DATA = "/usr/share/datasets/fashion-mnist"
REPOSITORY = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
WEIGHTS_DIR = os.path.join(REPOSITORY, "weights")
FILES = {
    "train": ("train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz"),
    "test": ("t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz"),
}

# IDX element types (the third byte of the magic number) -> big-endian NumPy dtype.
_IDX_TYPES = {0x08: ">u1", 0x09: ">i1", 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}


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


def augment(images, rng, flip=True, shift=0):
    """Random horizontal flips (probability 1/2 each) and, with ``shift`` > 0, random translations
    by up to ``shift`` pixels (zero-filled), per image. uint8 in, uint8 out, a new array."""
    out = images.copy()
    if flip:
        flipped = rng.random(len(out)) < 0.5
        out[flipped] = out[flipped, :, ::-1]
    if shift:
        n, h, w = out.shape
        padded = np.zeros((n, h + 2 * shift, w + 2 * shift), dtype=out.dtype)
        padded[:, shift:shift + h, shift:shift + w] = out
        dy, dx = rng.integers(0, 2 * shift + 1, size=(2, n))
        rows = dy[:, None] + np.arange(h)[None, :]
        cols = dx[:, None] + np.arange(w)[None, :]
        out = padded[np.arange(n)[:, None, None], rows[:, :, None], cols[:, None, :]]
    return out


# ----- progress ----------------------------------------------------------------------------------


class _Display:
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


# ----- training ----------------------------------------------------------------------------------


def _batches(n, batch_size, rng):
    order = rng.permutation(n)
    for start in range(0, n - batch_size + 1, batch_size):  # the ragged tail is dropped
        yield order[start:start + batch_size]


class _Replica:
    """One copy of the model that computes a shard's loss and gradients.

    Data parallelism (Krizhevsky 2014's "one weird trick", synchronous): every batch is split
    into one shard per worker; each replica runs forward and backward on its shard with the
    current parameters and returns the gradient of (sum of its shard's losses) / (batch size),
    so the gradients of all shards add up to the gradient of the batch mean. The optimizer
    lives in the parent only. Dropout masks are drawn from a generator seeded by
    (seed, step, shard), so a run repeats exactly for a given number of workers.
    """

    def __init__(self, model_kwargs, backend):
        import minigrad
        from minigrad.models.fashion_vgg import FashionVGG

        if backend is not None:
            minigrad.set_backend(backend)
        self.model = FashionVGG(**model_kwargs)
        self.params = list(self.model.parameters())

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


def _serve(conn, model_kwargs, backend):
    """A worker process: build a replica, answer run() requests until it receives None."""
    replica = _Replica(model_kwargs, backend)
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
    """``workers`` replicas: in this process when there is one, else in spawned processes.

    Processes are spawned rather than forked so no thread pool (OpenBLAS, Numba) is inherited
    half-initialized. Each child should be given one BLAS/Numba thread (see :func:`main`).
    """

    def __init__(self, workers, model_kwargs, backend):
        self.local, self.procs, self.conns = None, [], []
        if workers == 1:
            self.local = _Replica(model_kwargs, backend)
            return
        import multiprocessing

        context = multiprocessing.get_context("spawn")
        for _ in range(workers):
            parent, child = context.Pipe()
            proc = context.Process(target=_serve, args=(child, model_kwargs, backend), daemon=True)
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

    With ``workers`` (a :class:`_Workers`), each chunk is split across the replicas."""
    import minigrad

    params = [p.data for p in model.parameters()]
    if workers is None:
        workers = _Workers(1, model.config, None)
        workers.local.model, workers.local.params = model, list(model.parameters())
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


def train(model_name="fashion-vgg", data=None, epochs=8, batch_size=128, lr=1e-3, seed=0, flip=False, shift=0,
          output=None, log=None, overwrite=False, backend=None, model_kwargs=None, display=None,
          max_steps=None, workers=1):
    """Train ``model_name`` on ``data`` (as :func:`load_fashion_mnist` returns) and return a
    summary dict (per-epoch history, images per second, test accuracy, the model itself).

    ``output`` (a .safetensors path) is written after every epoch and ``log`` (a text file) at
    the end; neither replaces an existing file unless ``overwrite``. ``backend`` picks minigrad's
    CPU kernels ("numba" or "reference"; None keeps the default). ``workers`` > 1 splits every
    batch across that many processes (synchronous data parallelism). ``max_steps`` stops early
    (tests). ``model_kwargs`` overrides the architecture (tests use a tiny one).
    """
    import minigrad

    if model_name not in MODELS:
        raise ValueError(f"unknown model {model_name!r}; this script trains: {', '.join(MODELS)}")
    if int(workers) < 1:
        raise ValueError(f"workers must be at least 1, got {workers}")
    for path in (output, log):
        if path is not None and not overwrite and os.path.lexists(path):
            raise CheckpointError(f"{path} already exists; refusing to overwrite it (pass --force)")
    previous_backend = minigrad.get_backend()
    if backend is not None:
        minigrad.set_backend(backend)
    try:
        return _train(model_name, data, epochs, batch_size, lr, seed, flip, shift, output, log, backend,
                      model_kwargs, display, max_steps, workers)
    finally:
        minigrad.set_backend(previous_backend)  # the choice was for this run only


def _train(model_name, data, epochs, batch_size, lr, seed, flip, shift, output, log, backend, model_kwargs,
           display, max_steps, workers):
    import minigrad
    from minigrad import optim
    from minigrad.models.fashion_vgg import FashionVGG

    display = display or _Display()
    minigrad.manual_seed(seed)
    rng = np.random.default_rng(seed)
    model = FashionVGG(**(model_kwargs or {})).train()
    params = list(model.parameters())
    optimizer = optim.Adam(params, lr=lr)
    (train_x, train_y), (test_x, test_y) = data["train"], data["test"]
    steps_per_epoch = len(train_x) // batch_size
    if steps_per_epoch == 0:
        raise ValueError(f"batch size {batch_size} is larger than the {len(train_x)} training images")
    total_steps = steps_per_epoch * epochs if max_steps is None else min(max_steps, steps_per_epoch * epochs)
    display.line(f"training {model_name} ({sum(p.data.size for p in params):,} parameters) on "
                 f"{len(train_x):,} images, testing on {len(test_x):,}; {epochs} epochs of {steps_per_epoch} "
                 f"batches of {batch_size}; kernels: {minigrad.get_backend()}; {workers} worker(s)")

    pool = _Workers(int(workers), model.config, backend)
    if pool.local is not None:  # one worker: train this very model, no copies
        pool.local.model, pool.local.params = model, params
    history, step, train_seconds, losses = [], 0, 0.0, []
    try:
        for epoch in range(1, epochs + 1):
            seen, loss_sum, correct, epoch_start = 0, 0.0, 0, time.perf_counter()
            for index in _batches(len(train_x), batch_size, rng):
                if step >= total_steps:
                    break
                optimizer.param_groups[0]["lr"] = lr * 0.5 * (1.0 + math.cos(math.pi * step / total_steps))
                images, labels = augment(train_x[index], rng, flip, shift), train_y[index]
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
            summary = _summary(model_name, model, history, train_seconds, batch_size, lr, seed, flip, shift,
                               epochs, data, minigrad.get_backend(), len(pool))
            if output is not None:
                safetensors.save_file(model.state_dict(), output, _metadata(summary), overwrite=True)
    finally:
        pool.close()
    model.eval()
    summary["model"], summary["losses"] = model, losses
    if log is not None:
        _write_log(log, summary, overwrite=True)
    return summary


def _summary(model_name, model, history, train_seconds, batch_size, lr, seed, flip, shift, epochs, data, backend,
             workers):
    images = sum(r["images_per_second"] * r["seconds"] for r in history)
    return {
        "model_name": model_name, "config": model.config, "history": history,
        "train_seconds": train_seconds, "images_per_second": images / train_seconds,
        "seconds_per_epoch": train_seconds / len(history), "test_accuracy": history[-1]["test_accuracy"],
        "test_images": len(data["test"][0]), "train_images": len(data["train"][0]),
        "recipe": {"optimizer": "Adam", "lr": lr, "schedule": "cosine to 0 per step", "batch_size": batch_size,
                   "epochs": epochs, "epochs_run": len(history), "seed": seed, "flip": flip, "shift": shift,
                   "dropout": model.config["dropout"], "loss": "cross_entropy", "workers": workers},
        "backend": backend, "sha256": data["sha256"],
    }


def _metadata(summary):
    from minigrad.models.fashion_vgg import LABELS, MEAN, STD

    return {
        "arch": summary["model_name"],
        "format": "minigrad state_dict",
        "config": json.dumps(summary["config"]),
        "preprocessing": json.dumps({"channels": "L", "range": [0.0, 1.0], "mean": [MEAN], "std": [STD],
                                     "input": "uint8 (N, 28, 28), 0 = background, 255 = ink"}),
        "labels": json.dumps(list(LABELS)),
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


def main(argv=None):
    parser = argparse.ArgumentParser(prog="python -m training", description=__doc__.split("\n\n")[0])
    parser.add_argument("model", choices=MODELS, help="what to train")
    parser.add_argument("--data", default=DEFAULT_DATA, help="folder with the Fashion-MNIST IDX .gz files")
    parser.add_argument("--sample", action="store_true",
                        help="train on the shipped 2,000-image sample instead (1,600 train / 400 test)")
    parser.add_argument("--epochs", type=int, default=8)
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--lr", type=float, default=1e-3, help="Adam's initial learning rate (cosine-annealed to 0)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--dropout", type=float, default=0.1, help="dropout after fc6 and fc7")
    parser.add_argument("--flip", action="store_true", help="random horizontal flips")
    parser.add_argument("--shift", type=int, default=0, help="random translations of up to this many pixels")
    parser.add_argument("--workers", type=int, default=4,
                        help="processes that share each batch (data parallel; default 4, as for the shipped file)")
    parser.add_argument("--max-steps", type=int, default=None, help="stop after this many batches")
    parser.add_argument("--backend", choices=("numba", "reference"), default=None,
                        help="minigrad's CPU kernels (default: $MINIGRAD_BACKEND, else numba when installed)")
    parser.add_argument("--output", default=None,
                        help="weights file (default weights/<model>.safetensors); written after every epoch")
    parser.add_argument("--log", default=None, help="log file (default: the output with .log)")
    parser.add_argument("--force", action="store_true", help="replace existing output and log files")
    parser.add_argument("--quiet", action="store_true", help="no progress display")
    args = parser.parse_args(argv)
    if not 0 <= args.dropout < 1:
        parser.error("--dropout must lie in [0, 1)")
    if args.epochs < 1 or args.batch_size < 1 or args.workers < 1 or not args.lr > 0:
        parser.error("--epochs, --batch-size and --workers must be positive and --lr greater than 0")
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
                        overwrite=args.force, backend=args.backend, display=_Display(quiet=args.quiet),
                        max_steps=args.max_steps, workers=args.workers, model_kwargs={"dropout": args.dropout})
    except (FileNotFoundError, ValueError, CheckpointError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    print(f"final test accuracy {summary['test_accuracy']:.4f} on {summary['test_images']} images; "
          f"{summary['train_seconds']:.1f} s of training ({summary['seconds_per_epoch']:.1f} s/epoch, "
          f"{summary['images_per_second']:.1f} images/s); wrote {output} and {log}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
