"""Szegedy et al.'s box-constrained L-BFGS adversarial examples.

Szegedy, Zaremba, Sutskever, Bruna, Erhan, Goodfellow & Fergus, "Intriguing properties of neural
networks", ICLR 2014 (arXiv:1312.6199), sec. 4.1: for an image x and a target label l, find a
small r with f(x + r) = l and x + r in the box [0, 1]^m by approximately solving

    minimize  c |r| + loss_f(x + r, l)   subject to  x + r in [0, 1]^m

with box-constrained L-BFGS, and a line search over c. Here loss_f is the cross-entropy of l,
|r| is taken squared (||r||_2^2, smooth at r = 0 where the search starts; foolbox's and
cleverhans' versions of this attack do the same), and the box is kept by
:class:`minigrad.optim.LBFGS`'s ``bounds`` (projection, strong-Wolfe line search). The paper asks
for "the minimum c > 0" whose minimizer reaches l; with c weighing the distance it is the
*largest* such c that gives the smallest r, and that is what the search looks for: c grows (x10)
while the minimizer reaches l, shrinks (/10) while it does not, then is bisected geometrically
between the last success and the last failure. Every point L-BFGS evaluates lies in the box; the
smallest-L2 one classified as l over all rounds is returned (the image itself when none was).
Each image is attacked on its own (its own c). The default target is each image's runner-up class.
"""

import numpy as np

import minigrad
from methods.lib.attack import EPS_UNITS, AttackResult, Setup
from methods.lib.inputs import frozen
from methods.lib.options import Option, technique
from methods.lib.progress import Progress
from minigrad import functional as F

__all__ = ["lbfgs_attack"]


def _minimize(model, space, start, target, c, max_iter, keep):
    """L-BFGS on c ||p - start||^2 + CE(model(p), target) from ``start``, inside the box;
    ``keep(p, logits)`` sees every point evaluated. Returns (objective, logits) at the minimizer."""
    p = minigrad.tensor(start.copy(), requires_grad=True)
    origin = minigrad.tensor(start)
    optimizer = minigrad.optim.LBFGS([p], max_iter=max_iter, line_search_fn="strong_wolfe", bounds=space.box)

    def objective():
        z = model(space.inputs(p))
        return ((p - origin) ** 2).sum() * c + F.cross_entropy(z, np.array([target]), reduction="sum"), z

    def closure():
        optimizer.zero_grad()
        loss, z = objective()
        loss.backward()
        keep(p.data.copy(), z.numpy())
        return loss

    with frozen(model):
        optimizer.step(closure)
        with minigrad.no_grad():
            loss, z = objective()
    keep(p.data.copy(), z.numpy())
    return float(loss.item()), z.numpy()


@technique("lbfgs", "Box-constrained L-BFGS adversarial examples", "Szegedy et al. 2014", [
    Option("target", "target", None, "the label l to reach (index or name, or one per image; default: each image's "
                                     "runner-up class)"),
    Option("c", "float", 1.0, f"first weight c of the squared distance ||r||^2 (then searched), r measured {EPS_UNITS}",
           low=0, open_low=True),
    Option("search_steps", "int", 8, "values of c tried per image", low=1, high=100, gallery=2),
    Option("max_iter", "int", 100, "L-BFGS iterations per value of c", low=1, high=100_000, gallery=10),
])
def lbfgs_attack(model, x, *, target, c, search_steps, max_iter):
    """Szegedy et al.'s targeted attack on each image: an :class:`AttackResult` whose summary lists
    every c tried per image with its objective, the L2 of its minimizer and whether it reached the target."""
    setup = Setup(model, x, None, target)
    if setup.targets is None:
        setup.targets = np.argsort(-setup.logits, axis=1, kind="stable")[:, 1]
    space = setup.space
    best = setup.pixels.copy()
    flipped, evaluations, rounds, interrupted = np.full(len(best), -1), np.zeros(len(best), int), [], False
    progress = Progress(range(len(best) * search_steps), "lbfgs attack")
    ticks = iter(progress)
    try:
        for i, t in enumerate(setup.targets):
            start, best_l2, tried = setup.pixels[i:i + 1], np.inf, []
            succeeded_c, failed_c, weight = None, None, c

            def keep(p, logits, i=i, start=start):
                nonlocal best_l2
                evaluations[i] += 1
                if logits[0].argmax() == setup.targets[i]:
                    l2 = float(((p - start).astype(np.float64) ** 2).sum())
                    if flipped[i] < 0:
                        flipped[i] = evaluations[i]
                    if l2 < best_l2:
                        best[i], best_l2 = p[0], l2

            for _ in range(search_steps):
                next(ticks, None)
                objective, logits = _minimize(model, space, start, int(t), weight, max_iter, keep)
                reached = bool(logits[0].argmax() == t)
                tried.append({"c": weight, "objective": objective, "reached": reached})
                if reached:
                    succeeded_c = weight if succeeded_c is None else max(succeeded_c, weight)
                else:
                    failed_c = weight if failed_c is None else min(failed_c, weight)
                if failed_c is None:
                    weight *= 10
                elif succeeded_c is None:
                    weight /= 10
                else:
                    weight = float(np.sqrt(succeeded_c * failed_c))
            rounds.append(tried)
    except KeyboardInterrupt:
        interrupted = True
    return AttackResult(setup, best, "L-BFGS (Szegedy)", flipped, int(evaluations.max()), rounds=rounds,
                        evaluations=evaluations, interrupted=interrupted)
