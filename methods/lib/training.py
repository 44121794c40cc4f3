"""What every piece of code that trains a network with minigrad shares: minibatches, augmentation
by translation and flips, one step loop with progress and Ctrl-C (:func:`run_steps`) and the
optimization loop on it (:func:`optimize`), a single-threaded BLAS for loops of small products,
and the linear probe (:class:`LinearClassifier`) that measures what features know.

The techniques that learn (bag of visual words, Siamese embeddings, universal approximation,
Deep Image Prior, colorization) and the scripts that train the shipped models (``training/``) all
draw their batches and augment their images here, so each idea is written once.
"""

import contextlib
import math

import numpy as np

import minigrad
from methods.lib.progress import Progress

__all__ = ["LinearClassifier", "Training", "augment", "batch_schedule", "minibatches", "optimize", "run_steps",
           "single_threaded_blas", "split_by_class", "translate"]


def single_threaded_blas():
    """A context in which BLAS uses one thread (threadpoolctl, when installed; else a no-op).

    For loops of small matrix products (k-means, PCA of a few thousand images): OpenBLAS's own
    threads, woken by each product, busy-wait between them, and on this project's shared two-core
    machine a Lloyd pass over 20,000 patches cost 34 ms of CPU that way instead of 3 ms
    (scikit-learn limits BLAS the same way around its Lloyd loop)."""
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:
        return contextlib.nullcontext()
    return threadpool_limits(limits=1, user_api="blas")


def minibatches(n, batch_size, rng, drop_last=True):
    """Index arrays of one epoch over ``n`` items in the random order ``rng`` draws; the ragged
    tail is dropped unless ``drop_last`` is False (then every item appears exactly once)."""
    if batch_size < 1:
        raise ValueError(f"batch_size must be at least 1, got {batch_size}")
    order = rng.permutation(n)
    stop = n - batch_size + 1 if drop_last else n
    for start in range(0, max(stop, 0), batch_size):
        yield order[start:start + batch_size]


def split_by_class(labels, train_fraction):
    """(train, test) index arrays, sorted: of each class's images, in the dataset's order, the
    first ``train_fraction`` (rounded; at least one) train and the rest test. Every class is on
    both sides when it has two images or more, whatever order the dataset comes in (photo crops
    sorted by photograph), and for Fashion-MNIST's 60,000 + 10,000 images in their files' order
    with a fraction of 6/7 it is the official split (6,000 and 1,000 of each class)."""
    labels = np.asarray(labels)
    if not 0 < train_fraction < 1:
        raise ValueError(f"train_fraction must lie strictly between 0 and 1, got {train_fraction}")
    train, test = [], []
    for c in np.unique(labels):
        members = np.flatnonzero(labels == c)
        cut = min(max(1, int(round(train_fraction * len(members)))), max(len(members) - 1, 1))
        train.append(members[:cut])
        test.append(members[cut:])
    train, test = np.sort(np.concatenate(train)), np.sort(np.concatenate(test))
    if len(test) == 0:
        raise ValueError(f"train_fraction {train_fraction} leaves no test images (every class has one image)")
    return train, test


def batch_schedule(n, batch_size, steps, rng):
    """``steps`` index arrays for minibatch steps over ``n`` items: epoch after epoch of
    :func:`minibatches` (batches of min(batch_size, n))."""
    batch_size = min(batch_size, n)
    out = []
    while len(out) < steps:
        out.extend(minibatches(n, batch_size, rng))
    return out[:steps]


def translate(images, dy, dx):
    """``images`` (N, H, W) or (N, H, W, C) shifted down by ``dy`` and right by ``dx`` pixels (ints,
    or one per image; negative moves up / left), the uncovered border filled with zeros (the
    background of Fashion-MNIST). Same dtype, a new array."""
    images = np.asarray(images)
    if images.ndim not in (3, 4):
        raise ValueError(f"translate takes images (N, H, W) or (N, H, W, C), got shape {images.shape}")
    n, h, w = images.shape[:3]
    dy = np.broadcast_to(np.asarray(dy, np.int64), (n,))
    dx = np.broadcast_to(np.asarray(dx, np.int64), (n,))
    rows = np.arange(h)[None, :] - dy[:, None]
    cols = np.arange(w)[None, :] - dx[:, None]
    inside = ((rows >= 0) & (rows < h))[:, :, None] & ((cols >= 0) & (cols < w))[:, None, :]
    out = images[np.arange(n)[:, None, None], np.clip(rows, 0, h - 1)[:, :, None], np.clip(cols, 0, w - 1)[:, None, :]]
    mask = inside if images.ndim == 3 else inside[..., None]
    return np.where(mask, out, np.zeros((), images.dtype))


def augment(images, rng, flip=True, shift=0):
    """Random horizontal flips (probability 1/2 each) and, with ``shift`` > 0, random translations
    by up to ``shift`` pixels in each direction (zero-filled), per image: a new array, same dtype."""
    out = np.array(images, copy=True)
    if flip:
        flipped = rng.random(len(out)) < 0.5
        out[flipped] = out[flipped, :, ::-1]
    if shift:
        dy, dx = rng.integers(-shift, shift + 1, size=(2, len(out)))
        out = translate(out, dy, dx)
    return out


def run_steps(step, steps, description, verbose=None):
    """Call ``step(i)`` for ``i`` in 0 .. ``steps`` - 1 under a progress line; ``step`` returns a
    dict of numbers to show on it (or None). Ctrl-C (KeyboardInterrupt) ends the loop early: the
    step it interrupted is not counted. Returns the number of steps finished.

    A step should record its results only once it has them all, so that an interrupted step
    leaves no half-written record behind."""
    progress = Progress(range(steps), description, verbose=verbose)
    done = 0
    try:
        for i in progress:
            shown = step(i)
            if shown:
                progress.set(**shown)
            done = i + 1
    except KeyboardInterrupt:
        pass
    return done


class Training:
    """What :func:`optimize` did: ``losses`` (one per step run), ``steps`` run, ``interrupted``
    (True when Ctrl-C stopped it early; the parameters hold the last completed step)."""

    def __init__(self, losses, steps, interrupted):
        self.losses, self.steps, self.interrupted = losses, steps, interrupted

    def summary(self):
        """Numbers for a result's JSON."""
        return {"steps": self.steps, "interrupted": self.interrupted,
                "final_loss": self.losses[-1] if self.losses else None}


def optimize(loss, params, steps, lr, description, verbose=None, schedule="cosine", optimizer="adam"):
    """Minimize ``loss(step)`` (a function returning a scalar minigrad Tensor: it draws its own
    minibatch for that step) over ``params`` for ``steps`` steps with Adam (Kingma & Ba 2015) or
    plain SGD, the learning rate ``lr`` annealed along a half cosine to zero (``schedule="cosine"``)
    or kept (``"constant"``). Shows progress with the loss; Ctrl-C stops after the current step and
    keeps what was learnt. Runs on one BLAS thread (:func:`single_threaded_blas`): the networks
    the techniques train are small, and on a shared machine BLAS's waiting threads made a step of
    the embedding network ten times slower. Returns a :class:`Training`."""
    if schedule not in ("cosine", "constant"):
        raise ValueError(f"schedule must be 'cosine' or 'constant', got {schedule!r}")
    params = list(params)
    opt = minigrad.optim.Adam(params, lr=lr) if optimizer == "adam" else minigrad.optim.SGD(params, lr=lr)
    losses = []

    def step(i):
        if schedule == "cosine":
            opt.param_groups[0]["lr"] = lr * 0.5 * (1.0 + math.cos(math.pi * i / steps))
        value = loss(i)
        for p in params:
            p.grad = None
        value.backward()
        number = float(value.item())
        if not math.isfinite(number):
            raise FloatingPointError(f"{description}: the loss became {number} at step {i}; lower the learning rate")
        opt.step()
        losses.append(number)
        return {"loss": number}

    with single_threaded_blas():
        done = run_steps(step, steps, description, verbose)
    return Training(losses, len(losses), done < steps)


class LinearClassifier:
    """Multinomial logistic regression on standardized features, fitted by L-BFGS: the linear
    probe of representation learning (how much of a task a linear map of the features solves).

    ``fit(x, y)``: features (N, D) and labels (N,) in 0 .. ``classes`` - 1; each feature is
    standardized with the training mean and standard deviation, then W (D, K) and b (K,)
    minimize the mean cross-entropy plus ``weight_decay`` / 2 * |W|^2, in float64, with
    minigrad's L-BFGS and a strong-Wolfe line search (``iterations`` at most). ``predict(x)``:
    the class of each row; ``accuracy(x, y)``: the fraction right."""

    def __init__(self, classes, weight_decay=1e-3, iterations=200):
        self.classes, self.weight_decay, self.iterations = classes, weight_decay, iterations

    def _standard(self, x):
        return (np.asarray(x, np.float64) - self.mean) / self.scale

    def fit(self, x, y):
        x = np.asarray(x, np.float64)
        y = np.asarray(y, np.int64)
        if x.ndim != 2 or y.shape != (len(x),) or not len(x):
            raise ValueError(f"fit needs features (N, D) and N labels, got {x.shape} and {y.shape}")
        if y.min() < 0 or y.max() >= self.classes:
            raise ValueError(f"labels must lie in 0..{self.classes - 1}, got {y.min()}..{y.max()}")
        self.mean, self.scale = x.mean(axis=0), x.std(axis=0) + 1e-8
        features = minigrad.tensor(self._standard(x))
        onehot = minigrad.tensor(np.eye(self.classes)[y])
        w = minigrad.tensor(np.zeros((x.shape[1], self.classes)), requires_grad=True)
        b = minigrad.tensor(np.zeros(self.classes), requires_grad=True)
        optimizer = minigrad.optim.LBFGS([w, b], max_iter=self.iterations, line_search_fn="strong_wolfe")

        def closure():
            optimizer.zero_grad()
            logits = minigrad.functional.log_softmax(features @ w + b, axis=1)
            loss = -(logits * onehot).sum() / len(x) + (w * w).sum() * (self.weight_decay / 2)
            loss.backward()
            return loss

        optimizer.step(closure)
        self.weight, self.bias = w.numpy(), b.numpy()
        return self

    def predict(self, x):
        return np.argmax(self._standard(x) @ self.weight + self.bias, axis=1)

    def accuracy(self, x, y):
        return float(np.mean(self.predict(x) == np.asarray(y)))
