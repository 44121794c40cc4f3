"""The Carlini-Wagner L2 attack.

Carlini & Wagner, "Towards Evaluating the Robustness of Neural Networks", IEEE S&P 2017
(arXiv:1608.04644), sec. V.A: minimize ||delta||_2^2 + c * f(x + delta) with

* the change of variables x + delta = (tanh(w) + 1) / 2 (sec. V, method 3), so the image stays in
  [0, 1] while w is unconstrained and optimized with Adam (lr 0.01); w starts at the image
  (arctanh of 0.999999 (2x - 1), as in the authors' code, keeps black and white pixels finite);
* f(x') = max(max_{i != t} Z_i - Z_t, -kappa) for a target t, or, untargeted,
  max(Z_y - max_{i != y} Z_i, -kappa) for the label y (Z the logits; objective 6): kappa > 0
  asks for a margin, i.e. a high-confidence adversarial example;
* a binary search over c per image (the authors' code: 9 rounds from c = 1e-3, multiplied by 10
  until the first success, then bisected), each round restarting from the image, and early
  abort of a round when the objective has not fallen by 0.01% over a tenth of the steps.

The returned image is, per image, the smallest-L2 successful point of all rounds (the image
itself when none succeeded). The authors' code runs up to 10,000 Adam steps per round; the
default here is 1,000 (with early abort most rounds stop well before). For a bare nn.Module,
which declares no pixel range, there is no box and w is the input itself.
"""

import numpy as np

import minigrad
from methods.lib.attack import EPS_UNITS, LABEL, TARGET, AttackResult, Setup, first_success, scores_and_gradient
from methods.lib.options import Option, technique
from methods.lib.progress import Progress

__all__ = ["carlini_wagner"]


def _margin_loss(goal, targeted, kappa, const):
    """sum_i c_i max(+/-(Z_other - Z_goal), -kappa) as a function of the logits Z."""
    def loss(z):
        xp = minigrad.get_array_module(z.data)
        onehot = xp.zeros_like(z.data)
        onehot[xp.arange(len(goal)), xp.asarray(goal)] = 1
        real = (z * minigrad.tensor(onehot)).sum(axis=1)
        other = (z - minigrad.tensor(onehot * 1e4)).max(axis=1)
        gap = other - real if targeted else real - other
        return ((gap + kappa).relu() * minigrad.tensor(const.astype(z.dtype))).sum()
    return loss


def _margins(logits, goal, targeted):
    """Per image: Z_goal - max_{i != goal} Z_i (targeted) or max_{i != y} Z_i - Z_y (untargeted)."""
    rows = np.arange(len(goal))
    others = logits.astype(np.float64).copy()
    others[rows, goal] = -np.inf
    gap = logits[rows, goal] - others.max(axis=1)
    return gap if targeted else -gap


@technique("carlini-wagner", "Carlini-Wagner L2 attack", "Carlini & Wagner 2017", [
    LABEL, TARGET,
    Option("c", "float", 1e-3, f"initial constant c weighing the margin loss against ||delta||^2, delta measured "
                               f"{EPS_UNITS} (the authors' 1e-3)", low=0, open_low=True, gallery=1.0),
    Option("search_steps", "int", 9, "binary-search rounds over c (the authors' 9)", low=1, high=100, gallery=2),
    Option("steps", "int", 1000, "Adam steps per round (the authors' code: up to 10,000, with early abort)", low=1,
           high=100_000, gallery=30),
    Option("lr", "float", 0.01, "Adam's learning rate on w (the authors' 0.01)", low=0, open_low=True, gallery=0.05),
    Option("kappa", "float", 0.0, "confidence: the logit margin the adversarial class must win by", low=0),
    Option("abort_early", "bool", True, "end a round when the objective stops falling (0.01% over steps / 10)"),
])
def carlini_wagner(model, x, *, label, target, c, search_steps, steps, lr, kappa, abort_early):
    """The C&W L2 adversarial example of each image: an :class:`AttackResult` whose summary holds
    each image's final c and its margin."""
    setup = Setup(model, x, label, target)
    space, start = setup.space, setup.pixels
    targeted = setup.targets is not None
    goal = setup.targets if targeted else setup.labels
    n, boxed = len(start), space.box is not None
    w0 = np.arctanh((2 * start.astype(np.float64) - 1) * 0.999999) if boxed else start.astype(np.float64)
    best, best_l2 = start.copy(), np.full(n, np.inf)
    lower, upper, const = np.zeros(n), np.full(n, 1e10), np.full(n, float(c))
    flipped, evaluations, interrupted = np.full(n, -1), 0, False
    check = max(steps // 10, 1)
    progress = Progress(range(search_steps * steps), "carlini-wagner")
    ticks = iter(progress)
    try:
        for _ in range(search_steps):
            w = minigrad.tensor(w0.astype(start.dtype), requires_grad=True)
            optimizer = minigrad.optim.Adam([w], lr=lr)
            active, previous, hit = np.ones(n, bool), np.full(n, np.inf), np.zeros(n, bool)
            for step in range(steps):
                next(ticks, None)
                wd = w.data.astype(np.float64)
                p = ((np.tanh(wd) + 1) / 2 if boxed else wd).astype(start.dtype)
                logits, gradient = scores_and_gradient(model, space, p, _margin_loss(goal, targeted, kappa, const))
                evaluations += 1
                delta = (p - start).astype(np.float64)
                l2 = (delta ** 2).reshape(n, -1).sum(axis=1)
                margin = _margins(logits, goal, targeted)
                success = (margin > kappa) & active
                better = success & (l2 < best_l2)
                best[better], best_l2[better] = p[better], l2[better]
                flipped = first_success(flipped, success, evaluations)
                hit |= success
                objective = l2 + const * np.maximum(-margin, -kappa)
                progress.set(round_c=float(np.median(const)), l2=float(np.sqrt(np.median(l2))))
                if abort_early and step % check == 0:
                    active &= ~(objective > previous * 0.9999)
                    previous = np.where(active, objective, previous)
                    if not active.any():
                        break
                g = 2 * delta + gradient.astype(np.float64)
                if boxed:
                    g *= (1 - np.tanh(wd) ** 2) / 2
                w.grad = g.astype(start.dtype)
                kept = w.data.copy()
                optimizer.step()
                w.data[~active] = kept[~active]
            upper = np.where(hit, np.minimum(upper, const), upper)
            lower = np.where(hit, lower, np.maximum(lower, const))
            const = np.where(upper < 1e9, (lower + upper) / 2, const * 10)
    except KeyboardInterrupt:
        interrupted = True
    return AttackResult(setup, best, "Carlini-Wagner L2", flipped, evaluations, kappa=kappa, evaluations=evaluations,
                        c=np.where(upper < 1e9, upper, np.nan), interrupted=interrupted)
