"""Iterative FGSM and projected gradient descent (PGD).

Kurakin, Goodfellow & Bengio, "Adversarial examples in the physical world", ICLR workshop 2017
(arXiv:1607.02533), sec. 2.2: the basic iterative method repeats small signed steps of size
alpha, clipping the image after each to the eps-ball around x and to the valid range. Madry,
Makelov, Schmidt, Tsipras & Vladu, "Towards Deep Learning Models Resistant to Adversarial
Attacks", ICLR 2018 (arXiv:1706.06083), sec. 2: the same projected gradient ascent from a
uniformly random start in the ball, the strongest first-order attack of their study;
``random_start=False`` is Kurakin's method. The last iterate is returned (Madry et al.).

``norm="linf"``: x_{t+1} = Clip_{x, eps}(x_t + alpha sign(g)); ``norm="l2"``:
x_{t+1} = Proj_{||x' - x||_2 <= eps}(x_t + alpha g / ||g||_2); g the gradient of the
cross-entropy of the label (ascended), or of the target (descended) in a targeted attack.

Defaults: eps 8/255 for L-inf and 1.0 for L2 (the usual benchmark values, torchattacks' PGD and
PGDL2), alpha = 2.5 eps / steps (Madry et al.'s rule: 2/255 for 8/255 in 10 steps), 10 steps.
The random start is drawn for the whole batch from ``numpy.random.default_rng(seed)``: for L-inf
``uniform(-eps, eps, x.shape)``; for L2 ``standard_normal(x.shape)`` scaled per image to a
radius ``eps * uniform(0, 1, N)`` (torchattacks' PGDL2), then clipped to the valid range.
"""

import numpy as np

from methods.lib.attack import (EPS_UNITS, LABEL, TARGET, AttackResult, Setup, cross_entropy, direction,
                                first_success, mean_cross_entropy, project, scores_and_gradient, succeeded)
from methods.lib.options import Option, technique
from methods.lib.progress import Progress

__all__ = ["pgd", "random_start_delta"]

#: eps when none is given, per norm.
DEFAULT_EPS = {"linf": 8 / 255, "l2": 1.0}


def random_start_delta(shape, eps, norm, seed, dtype=np.float32):
    """The random start of :func:`pgd` (see the module docstring), before clipping to the box."""
    rng = np.random.default_rng(seed)
    if norm == "linf":
        return rng.uniform(-eps, eps, shape).astype(dtype)
    delta = rng.standard_normal(shape)
    length = np.sqrt((delta.reshape(shape[0], -1) ** 2).sum(axis=1)).reshape(-1, 1, 1, 1)
    radius = eps * rng.uniform(0, 1, shape[0]).reshape(-1, 1, 1, 1)
    return (delta / length * radius).astype(dtype)


@technique("pgd", "Iterative FGSM and projected gradient descent (PGD)", "Kurakin et al. 2017; Madry et al. 2018", [
    LABEL, TARGET,
    Option("eps", "float", None, f"radius of the ball, {EPS_UNITS} (default: 8/255 for linf, 1.0 for l2)", low=0,
           gallery=0.1),
    Option("alpha", "float", None, "step size, in eps's units (default: 2.5 eps / steps, Madry et al.)", low=0,
           open_low=True),
    Option("steps", "int", 10, "gradient steps", low=1, high=100_000),
    Option("norm", "choice", "linf", "the ball: linf (signed steps) or l2 (normalized gradient steps)",
           choices=("linf", "l2")),
    Option("random_start", "bool", True, "start from a uniformly random point of the ball (Madry et al.); "
                                         "--no-random-start is Kurakin et al.'s basic iterative method"),
    Option("seed", "int", 0, "seed of the random start", low=0),
])
def pgd(model, x, *, label, target, eps, alpha, steps, norm, random_start, seed):
    """``steps`` projected gradient steps in the ``norm`` ball of radius ``eps``: an
    :class:`AttackResult` with the loss per step in ``history``."""
    eps = DEFAULT_EPS[norm] if eps is None else eps
    alpha = 2.5 * eps / steps if alpha is None else alpha
    setup = Setup(model, x, label, target)
    space, start = setup.space, setup.pixels
    goal, sign = (setup.labels, 1) if setup.targets is None else (setup.targets, -1)
    loss = cross_entropy(goal)
    p = start.copy()
    if random_start:
        p = space.clip(start + random_start_delta(start.shape, eps, norm, seed, start.dtype))
    flipped, losses, done, interrupted = np.full(len(p), -1), [], 0, False
    progress = Progress(range(steps), "pgd")
    try:
        for step in progress:
            logits, gradient = scores_and_gradient(model, space, p, loss)
            flipped = first_success(flipped, succeeded(logits, setup.labels, setup.targets), step)
            losses.append(mean_cross_entropy(logits, goal))
            progress.set(loss=losses[-1])
            moved = p + sign * alpha * direction(gradient, norm) - start
            p = space.clip(start + project(moved, eps, norm)).astype(start.dtype)
            done = step + 1
    except KeyboardInterrupt:
        interrupted = True
    name = f"PGD-{norm}" if random_start else f"iterative FGSM ({norm})"
    return AttackResult(setup, p, name, flipped, done, history={"cross-entropy of the goal class": losses},
                        eps=eps, alpha=alpha, steps_run=done, interrupted=interrupted)
