"""The fast gradient sign method (FGSM).

Goodfellow, Shlens & Szegedy, "Explaining and Harnessing Adversarial Examples", ICLR 2015
(arXiv:1412.6572), sec. 4: if a network is close to linear, the change of its loss under a
perturbation eta with ||eta||_inf <= eps is largest for eta = eps * sign(grad_x J(theta, x, y)),
one gradient away. The lecture notes' figure is the paper's panda: GoogLeNet's "panda" (57.7%)
plus 0.007 x the sign of the gradient becomes "gibbon" (99.3%)::

    result = methods.fgsm(model, model.preprocess("panda.jpg"), eps=0.007)
    result.adversarial, result.adversarial_class, result.linf    # the batch, 368 (gibbon), 0.007

With a ``target`` the step goes down the gradient of the target's loss instead,
x' = x - eps * sign(grad_x J(theta, x, t)) (Kurakin, Goodfellow & Bengio 2017's one-step
targeted variant). J is the cross-entropy of the logits. ε is in pixel units on [0, 1] for
models with preprocessing (see :mod:`methods.lib.attack`).
"""

from methods.lib.attack import (EPS_UNITS, LABEL, TARGET, AttackResult, Setup, cross_entropy, direction,
                                scores_and_gradient)
from methods.lib.options import Option, technique

__all__ = ["fgsm"]


@technique("fgsm", "Fast gradient sign method", "Goodfellow et al. 2015", [
    LABEL, TARGET,
    Option("eps", "float", 8 / 255, f"size of the signed step, {EPS_UNITS} (the panda figure: 0.007)", low=0,
           gallery=0.1),
])
def fgsm(model, x, *, label, target, eps):
    """One signed-gradient step of size ``eps`` from each image: an :class:`AttackResult`."""
    setup = Setup(model, x, label, target)
    goal, sign = (setup.labels, 1) if setup.targets is None else (setup.targets, -1)
    _, gradient = scores_and_gradient(model, setup.space, setup.pixels, cross_entropy(goal))
    adversarial = setup.space.clip(setup.pixels + sign * eps * direction(gradient, "linf"))
    return AttackResult(setup, adversarial.astype(setup.pixels.dtype), "FGSM", eps=eps)
