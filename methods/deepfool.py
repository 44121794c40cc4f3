"""DeepFool: the smallest L2 step across the nearest linearized decision boundary, repeated.

Moosavi-Dezfooli, Fawzi & Frossard, "DeepFool: a simple and accurate method to fool deep neural
networks", CVPR 2016 (arXiv:1511.04599), Algorithm 2 (multi-class): at x_i, with k0 the original
class and, for each candidate class k, w_k = grad f_k(x_i) - grad f_k0(x_i) and
f'_k = f_k(x_i) - f_k0(x_i) (class scores before the softmax), the nearest boundary of the
linearized classifier is l = argmin_k |f'_k| / ||w_k||_2 and the step onto it is
r_i = |f'_l| / ||w_l||_2^2 * w_l. The steps add up until the label changes, and the total is
scaled by 1 + overshoot (sec. 4: overshoot = 0.02) so the image lands past the boundary. As in
the authors' code, the candidates are the ``candidates`` classes the clean image scores highest
(10), each step adds 1e-4 to |f'_l| (so it never stalls on the boundary), and the image is
x_0 + (1 + overshoot) * sum r_i after every step. Clipped to the valid range for models with
preprocessing (the paper does not constrain the range). Untargeted.
"""

import numpy as np

from methods.lib.attack import EPS_UNITS, LABEL, AttackResult, Setup, class_gradients, first_success, succeeded
from methods.lib.options import Option, technique
from methods.lib.progress import Progress

__all__ = ["deepfool"]


@technique("deepfool", "DeepFool", "Moosavi-Dezfooli et al. 2016", [
    LABEL,
    Option("overshoot", "float", 0.02, f"the total step, measured {EPS_UNITS}, is scaled by 1 + overshoot to cross "
                                        "the boundary", low=0, high=10),
    Option("steps", "int", 50, "most linearization steps", low=1, high=10_000),
    Option("candidates", "int", 10, "classes considered: the clean image's top scores (the label included)", low=2,
           gallery=4),
])
def deepfool(model, x, *, label, overshoot, steps, candidates):
    """The DeepFool perturbation of each image: an :class:`AttackResult` whose L2 norms are the
    distances to the (overshot) boundary found, with the steps each image took."""
    setup = Setup(model, x, label)
    space, start, labels = setup.space, setup.pixels, setup.labels
    classes = min(candidates, setup.logits.shape[1])
    ranked = np.argsort(-setup.logits, axis=1, kind="stable")
    others = np.array([[c for c in row if c != k][:classes - 1] for row, k in zip(ranked, labels)])
    columns = np.concatenate([labels[:, None], others], axis=1)
    rows = np.arange(len(start))
    total = np.zeros(start.shape, np.float64)
    p, flipped, done, interrupted = start.copy(), np.full(len(start), -1), 0, False
    try:
        for step in Progress(range(steps), "deepfool"):
            logits, grads = class_gradients(model, space, p, columns)
            fooled = succeeded(logits, labels)
            flipped = first_success(flipped, fooled, step)
            if fooled.all():
                break
            w = (grads[:, 1:] - grads[:, :1]).astype(np.float64).reshape(len(p), classes - 1, -1)
            f = logits[rows[:, None], others] - logits[rows, labels][:, None]
            length = np.sqrt((w ** 2).sum(axis=2)) + 1e-12
            nearest = np.argmin(np.abs(f) / length, axis=1)
            w_l, f_l, n_l = w[rows, nearest], np.abs(f[rows, nearest]), length[rows, nearest]
            r = ((f_l + 1e-4) / n_l ** 2)[:, None] * w_l
            total += np.where(fooled[:, None], 0.0, r).reshape(start.shape)
            p = space.clip(start + (1 + overshoot) * total).astype(start.dtype)
            done = step + 1
    except KeyboardInterrupt:
        interrupted = True
    return AttackResult(setup, p, "DeepFool", flipped, done, overshoot=overshoot, steps_run=done,
                        interrupted=interrupted)
