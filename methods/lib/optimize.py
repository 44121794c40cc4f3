"""The one loop behind every optimizing-the-image technique.

Class model visualization, unit visualization, feature inversion, DeepDream, texture synthesis
and style transfer are the same loop with different objectives, regularizers and schedules
(Lucent's ``render_vis`` idea, shared/notes/methods-library-anchors.md). :func:`optimize` runs it:

1. draw this step's jitter (a circular shift, undone afterwards: cs231n, DeepDream);
2. evaluate the objective -- named per-image terms to minimize -- on the shifted image, and
   backpropagate their sum to the image (each image's terms depend on that image alone, so a
   batch is that many independent optimizations: restarts, starts, layers side by side);
3. update the image with the step rule: :class:`GradientStep` (plain, L2-normalized as in
   cs231n, mean-|g|-normalized as in DeepDream, or Yosinski et al.'s "progress" rate),
   :class:`Momentum` (with a learning-rate schedule, Mahendran & Vedaldi), :class:`Adam`, or
   :class:`LBFGS` (Gatys et al.);
4. apply the steps between updates (``after``: clipping, decay, blur every k, pixel zeroing;
   :mod:`methods.lib.regularizers`);
5. record every term per image, keep a snapshot every ``snapshot_every`` steps, show progress.

The image may be optimized in other units than the model's input (``scale``: model input =
variable * scale), e.g. 8-bit pixel levels, in which the papers' step sizes are given. Ctrl-C
(KeyboardInterrupt) stops the loop and keeps the image of the last completed step.
"""

from collections import namedtuple

import numpy as np

import minigrad
from methods.lib.figures import curves
from methods.lib.images import enlarge, grid, upscale_factor
from methods.lib.inputs import to_host
from methods.lib.progress import Progress
from methods.lib.receptive import smallest_input
from methods.lib.regularizers import roll
from methods.lib.result import Result

__all__ = ["Adam", "GradientStep", "LBFGS", "Momentum", "OptimizedResult", "Run", "optimize", "optimized_size"]

#: ``image`` (N, C, H, W) the result in the model's input space (a NumPy array); ``terms``
#: {name: (steps + 1, N) float64} each term per image before every step and after the last;
#: ``snapshots`` [(steps done, (N, C, H, W) image)]; ``steps`` the steps completed;
#: ``interrupted`` whether Ctrl-C stopped it early.
Run = namedtuple("Run", ["image", "terms", "snapshots", "steps", "interrupted"])


def _per_image(values, n):
    """Per-image host values of a term: a Tensor (N,) or a number shared by all (a constant)."""
    data = to_host(values).astype(np.float64)
    return np.broadcast_to(data, (n,)).copy() if data.ndim == 0 else data.reshape(n)


class GradientStep:
    """x <- x - lr * g / norm(g), per image. ``normalize``: None (the raw gradient), "l2" (g / ||g||:
    cs231n's class visualization), "mean" (g / mean |g|: DeepDream), or "progress" (Yosinski et
    al.'s rate lr_i = min(lr, progress / ||g_i||^2), which changes a linear objective by
    ``progress``, a number or one per image)."""

    def __init__(self, lr, normalize=None, progress=None):
        if normalize not in (None, "l2", "mean", "progress"):
            raise ValueError(f"unknown normalization {normalize!r}")
        if normalize == "progress" and progress is None:
            raise ValueError("the progress rate needs the desired progress per step")
        self.lr, self.normalize, self.progress = lr, normalize, progress

    def bind(self, param):
        self.param = param

    def step(self, evaluate, t):
        terms = evaluate()
        g = self.param.grad
        xp = minigrad.get_array_module(g)
        flat = g.reshape(len(g), -1)
        if self.normalize is None:
            rate = xp.full((len(g),), self.lr, g.dtype)
        elif self.normalize == "l2":
            rate = self.lr / xp.maximum(xp.sqrt((flat * flat).sum(axis=1)), 1e-12)
        elif self.normalize == "mean":
            rate = self.lr / xp.maximum(abs(flat).mean(axis=1), 1e-12)
        else:
            rate = xp.minimum(self.lr, self.progress / xp.maximum((flat * flat).sum(axis=1), 1e-30))
        self.param.data -= rate.astype(g.dtype).reshape((-1,) + (1,) * (g.ndim - 1)) * g
        return terms


class Momentum:
    """Gradient descent with momentum (``minigrad.optim.SGD``): Mahendran & Vedaldi's optimizer.
    ``schedule``: [(first step, multiplier of lr)], e.g. [(0, 1), (100, 0.1)]; the momentum is
    reset when the rate changes, as their code does (it would overshoot otherwise)."""

    def __init__(self, lr, momentum=0.9, schedule=((0, 1.0),)):
        self.lr, self.momentum, self.schedule = lr, momentum, sorted(schedule)

    def bind(self, param):
        self.param = param
        self.optimizer = minigrad.optim.SGD([param], lr=self.lr, momentum=self.momentum)

    def step(self, evaluate, t):
        lr = self.lr * [m for start, m in self.schedule if start <= t][-1]
        group = self.optimizer.param_groups[0]
        if lr != group["lr"]:
            group["lr"] = lr
            self.optimizer.state.clear()
        terms = evaluate()
        self.optimizer.step()
        return terms


class Adam:
    """Adam (``minigrad.optim.Adam``) with learning rate ``lr``."""

    def __init__(self, lr):
        self.lr = lr

    def bind(self, param):
        self.param = param
        self.optimizer = minigrad.optim.Adam([param], lr=self.lr)

    def step(self, evaluate, t):
        terms = evaluate()
        self.optimizer.step()
        return terms


class LBFGS:
    """One L-BFGS iteration per step (``minigrad.optim.LBFGS``, strong-Wolfe line search, the
    curvature history kept across steps), optionally kept inside ``bounds`` = (low, high).

    Each ``LBFGS.step`` call first evaluates the current point, which the previous step's line
    search has already evaluated: the last few evaluations are remembered, so a step costs one
    forward and backward pass when the first trial step is accepted, not two. Only valid for a
    deterministic objective (no jitter)."""

    def __init__(self, history=100, bounds=None, max_evals=20):
        self.history, self.bounds, self.max_evals = history, bounds, max_evals
        self.recent = []

    def bind(self, param):
        self.param = param
        self.optimizer = minigrad.optim.LBFGS([param], lr=1.0, max_iter=1, max_eval=self.max_evals,
                                              history_size=self.history, line_search_fn="strong_wolfe",
                                              tolerance_grad=0.0, tolerance_change=0.0, bounds=self.bounds)

    def step(self, evaluate, t):
        first = []
        xp = minigrad.get_array_module(self.param.data)

        def closure():
            for point, grad, loss, terms in self.recent:
                if xp.array_equal(point, self.param.data):
                    break
            else:
                terms = evaluate()
                grad = self.param.grad
                loss = float(sum(float(v.sum()) for v in terms.values()))
                self.recent = (self.recent + [(self.param.data.copy(), grad.copy(), loss, terms)])[-4:]
            self.param.grad = grad.copy()
            first.append(terms)
            return loss

        self.optimizer.step(closure)
        return first[0]


def reduced_size(model, size, max_size):
    """``size`` (H, W) with its sides reduced to at most ``max_size`` pixels (the aspect kept), but
    never below the smallest input the model's layers run on (:func:`smallest_input`: a 32-pixel
    gallery run on AlexNet optimizes at 63 x 63); a ValueError when the model takes one size only."""
    h, w = size
    if max_size is None or max(h, w) <= max_size:
        return h, w
    if model.fixed_size and model.input_shape is not None:
        raise ValueError(f"max_size {max_size} is smaller than {model.describe()}'s input size {h}x{w}, "
                         "the only size it takes")
    low = smallest_input(model)
    scale = max(max_size / max(h, w), low[0] / h, low[1] / w)
    return min(h, max(1, round(h * scale))), min(w, max(1, round(w * scale)))


def optimized_size(model, max_size):
    """(C, H, W) of the image to optimize: the model's input shape, its sides reduced to at most
    ``max_size`` pixels when the model takes other sizes (:func:`reduced_size`)."""
    if model.input_shape is None:
        raise ValueError(f"{model.describe()} does not declare an input size; adapt it with "
                         "minigrad.models.as_model(net, input_shape=(C, H, W))")
    c, h, w = model.input_shape
    return (c,) + reduced_size(model, (h, w), max_size)


def optimize(start, objective, *, steps, rule, scale=1.0, jitter=0, after=(), snapshot_every=0, seed=0,
             description="optimizing", verbose=None):
    """Optimize ``start`` (an (N, C, H, W) array, in the units of the variable) for ``steps`` steps;
    returns a :class:`Run`.

    ``objective(x)``: {name: Tensor (N,)} per-image terms to minimize at the model input ``x``
    (a Tensor, variable * ``scale``); ``rule``: a step rule of this module; ``jitter``: the largest
    circular shift in pixels (drawn per step from ``seed``); ``after``: steps between updates,
    each ``f(variable, gradient, step)``; ``snapshot_every``: keep the image every that many
    steps (0: never)."""
    xp = minigrad.get_array_module(start)
    scale = xp.asarray(scale, dtype=start.dtype)
    param = minigrad.tensor(xp.array(start, copy=True), requires_grad=True)
    rule.bind(param)
    rng = np.random.default_rng([seed, 1])
    shift = (0, 0)
    n = start.shape[0]

    def evaluate():
        x = minigrad.tensor(roll(param.data, shift) * scale, requires_grad=True)
        with minigrad.enable_grad():
            terms = objective(x)
            total = None
            for value in terms.values():
                total = value.sum() if total is None else total + value.sum()
        total.backward()
        param.grad = roll(x.grad * scale, (-shift[0], -shift[1]))
        return {name: _per_image(value.data, n) for name, value in terms.items()}

    history, snapshots = [], []
    kept = param.data.copy()
    done, interrupted = 0, False
    progress = Progress(range(steps), description, verbose=verbose)
    try:
        for t in progress:
            shift = tuple(int(s) for s in rng.integers(-jitter, jitter + 1, 2)) if jitter else (0, 0)
            terms = rule.step(evaluate, t)
            if not all(np.isfinite(v).all() for v in terms.values()):
                raise FloatingPointError(f"{description}: the loss became non-finite at step {t}; lower the "
                                         "learning rate")
            gradient = param.grad
            for transform in after:
                transform(param.data, gradient, t)
            history.append(terms)
            done = t + 1
            kept[...] = param.data
            progress.set(loss=float(sum(v.sum() for v in terms.values())))
            if snapshot_every and done % snapshot_every == 0 and done < steps:
                snapshots.append((done, to_host(param.data * scale)))
    except KeyboardInterrupt:
        interrupted = True
        param.data[...] = kept
    with minigrad.no_grad():
        final = objective(minigrad.tensor(param.data * scale))
    history.append({name: _per_image(value.data, n) for name, value in final.items()})
    terms = {name: np.stack([h[name] for h in history]) for name in history[-1]}
    return Run(to_host(param.data * scale), terms, snapshots, done, interrupted)


class OptimizedResult(Result):
    """What an optimizing-the-image technique returns: ``image`` (N, C, H, W) the optimized batch in
    the model's input space (what ``model(x)`` takes), ``pixels`` the same as uint8 RGB
    (N, H, W, 3), ``terms`` {name: (steps + 1, N)} each objective term per image before every
    step and after the last, ``snapshots`` [(step, (N, C, H, W))], ``steps`` and ``interrupted``.
    ``captions`` name each image of the batch."""

    def __init__(self, model, run, captions, **summary):
        super().__init__(steps=run.steps, interrupted=run.interrupted, **summary)
        self.image, self.terms, self.snapshots = run.image, run.terms, run.snapshots
        self.steps, self.interrupted, self.captions = run.steps, run.interrupted, list(captions)
        self.pixels = model.deprocess(run.image)
        self.snapshot_pixels = [(step, model.deprocess(image)) for step, image in run.snapshots]
        self.summary["final_terms"] = {name: values[-1] for name, values in run.terms.items()}

    def loss_curves(self, title, terms=None, sign=1.0, ylabel="loss", log=False, labels=None):
        """The chosen terms (default: their sum), summed over images or per image (``labels``), as
        a curves figure; ``sign`` -1 shows a maximized objective rising."""
        names = terms or list(self.terms)
        total = sign * sum(self.terms[name] for name in names)
        series = {label: total[:, i] for i, label in enumerate(labels)} if labels else {ylabel: total.sum(axis=1)}
        return curves(series, title=title, ylabel=ylabel, log=log)

    def evolution(self, columns=None):
        """The snapshots and the result of every image as one grid, a row per image, labelled by step."""
        frames = self.snapshot_pixels + [(self.steps, self.pixels)]
        tiles = [frame[i] for i in range(len(self.pixels)) for _, frame in frames]
        labels = [f"{self.captions[i]}: step {step}" if len(self.captions) > 1 else f"step {step}"
                  for i in range(len(self.pixels)) for step, _ in frames]
        side = max(self.pixels.shape[1:3])
        factor = upscale_factor(side, 96)
        return grid([enlarge(t, factor) for t in tiles], columns=columns or len(frames), labels=labels)

    def pictures(self):
        return {f"{i}": image for i, image in enumerate(self.pixels)}
