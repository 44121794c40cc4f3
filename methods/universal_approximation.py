"""Universal approximation with one hidden layer of ReLUs, and what it does not promise.

The lecture notes ("Understanding Universal Approximation", after a blog post) build a function
from six shifted ReLUs of one input,

    n1(x) = ReLU(-5x - 7.7)    n2(x) = ReLU(-1.2x - 1.3)    n3(x) = ReLU(1.2x + 1)
    n4(x) = ReLU(1.2x - 0.2)   n5(x) = ReLU(2x - 1.1)       n6(x) = ReLU(5x - 5)

    Z(x) = -n1(x) - n2(x) - n3(x) + n4(x) + n5(x) + n6(x),

i.e. a network with one hidden layer of six units whose output weights are -1, -1, -1, 1, 1, 1: a
piecewise-linear curve with a kink where each unit switches on. Any continuous function on a
compact interval is the limit of such sums (Cybenko 1989 for sigmoids; Leshno et al. 1993 for any
non-polynomial activation, ReLU included). Three pictures here:

* the six units and Z, computed by the notes' ``feed_forward`` written in minigrad
  (:func:`feed_forward`) with the notes' weights, next to the formula (they agree to rounding);
* one-hidden-layer ReLU networks fitted to a 1-D function with more and more hidden units
  (Adam, full batch, mean squared error): the error falls as units are added;
* the notes' "compact domains" demo: a network trained on x in [-d, d] fits there and fails
  outside (a ReLU network is linear beyond its last kink, so it extrapolates along a straight
  line, whatever the function does): the theorem promises nothing off the training interval.
"""

import numpy as np

import minigrad
from methods.lib.figures import curves
from methods.lib.options import Option, technique
from methods.lib.result import Result
from methods.lib.training import optimize
from minigrad import functional as F
from minigrad.tensor import as_tensor

__all__ = ["FUNCTIONS", "NOTES_HIDDEN_BIAS", "NOTES_HIDDEN_WEIGHT", "NOTES_OUTPUT_WEIGHT", "UniversalApproximationResult",
           "feed_forward", "notes_network", "notes_units", "notes_z", "universal_approximation"]

#: The notes' six units: n_i(x) = ReLU(w_i x + b_i).
NOTES_HIDDEN_WEIGHT = np.array([-5.0, -1.2, 1.2, 1.2, 2.0, 5.0])
NOTES_HIDDEN_BIAS = np.array([-7.7, -1.3, 1.0, -0.2, -1.1, -5.0])
#: Z = -n1 - n2 - n3 + n4 + n5 + n6.
NOTES_OUTPUT_WEIGHT = np.array([-1.0, -1.0, -1.0, 1.0, 1.0, 1.0])

#: The functions a network can be fitted to (each of one variable, defined everywhere).
FUNCTIONS = {
    "sine": (lambda x: np.sin(3.0 * x), "sin(3x)"),
    "wave": (lambda x: np.sin(2.0 * x) + 0.5 * np.cos(5.0 * x), "sin(2x) + cos(5x) / 2"),
    "bump": (lambda x: np.exp(-4.0 * x * x), "exp(-4x^2)"),
}


def notes_units(x):
    """The notes' formula for n1 ... n6 at the points ``x``: (6, N) float64."""
    x = np.asarray(x, np.float64)
    return np.maximum(NOTES_HIDDEN_WEIGHT[:, None] * x[None, :] + NOTES_HIDDEN_BIAS[:, None], 0.0)


def notes_z(x):
    """The notes' formula Z(x) = -n1 - n2 - n3 + n4 + n5 + n6 at the points ``x`` (float64)."""
    n = notes_units(x)
    return -n[0] - n[1] - n[2] + n[3] + n[4] + n[5]


def feed_forward(input, Wh, Bh, Wo, Bo):
    """The notes' ``feed_forward`` in minigrad: one hidden layer of ReLUs and a linear output.

    ``input`` (N, 1), ``Wh`` (1, H), ``Bh`` (H,), ``Wo`` (H, 1), ``Bo`` (1,), all Tensors (or
    arrays); returns the (N, 1) output Ao, differentiable in every argument::

        Zh = input @ Wh;  Ah = relu(Zh + Bh);  Zo = Ah @ Wo;  Ao = Zo + Bo
    """
    Zh = as_tensor(input) @ Wh
    Ah = F.relu(Zh + Bh)
    Zo = Ah @ Wo
    return Zo + Bo


def notes_network():
    """The notes' weights as the (Wh, Bh, Wo, Bo) float64 Tensors :func:`feed_forward` takes."""
    return (minigrad.tensor(NOTES_HIDDEN_WEIGHT[None, :]), minigrad.tensor(NOTES_HIDDEN_BIAS),
            minigrad.tensor(NOTES_OUTPUT_WEIGHT[:, None]), minigrad.tensor(np.zeros(1)))


def _network(hidden, rng, domain):
    """(Wh, Bh, Wo, Bo) of a fresh network with ``hidden`` units, float64: unit i is
    ReLU(w_i (x - c_i)) with its kink c_i uniform on [-domain, domain] and slope w_i of random
    sign and size U(0.5, 1.5) -- the notes' construction, each unit switching on at its own point
    of the interval -- and output weights U(-1, 1) / sqrt(hidden), output bias 0."""
    slope = rng.choice([-1.0, 1.0], hidden) * rng.uniform(0.5, 1.5, hidden)
    kink = rng.uniform(-domain, domain, hidden)
    arrays = [slope[None, :], -slope * kink, rng.uniform(-1, 1, (hidden, 1)) / np.sqrt(hidden), np.zeros(1)]
    return [minigrad.tensor(a, requires_grad=True) for a in arrays]


class UniversalApproximationResult(Result):
    """``x`` / ``z`` / ``units`` the notes' network on a grid (Z and the six n_i, by
    :func:`feed_forward`); ``grid`` / ``target`` / ``fits`` ({hidden units: predictions}) the fitted
    networks on the training interval; ``wide`` / ``wide_target`` / ``wide_fit`` the widest one on
    an interval ``extent`` times longer; ``losses`` {hidden units: training losses}."""

    technique = "universal-approximation"

    def __init__(self, x, z, units, grid, target, fits, wide, wide_target, wide_fit, losses, function, domain,
                 **summary):
        super().__init__(**summary)
        self.x, self.z, self.units = x, z, units
        self.grid, self.target, self.fits = grid, target, fits
        self.wide, self.wide_target, self.wide_fit = wide, wide_target, wide_fit
        self.losses, self.function, self.domain = losses, function, domain

    def figures(self):
        labels = ["n1 = ReLU(-5x - 7.7)", "n2 = ReLU(-1.2x - 1.3)", "n3 = ReLU(1.2x + 1)", "n4 = ReLU(1.2x - 0.2)",
                  "n5 = ReLU(2x - 1.1)", "n6 = ReLU(5x - 5)"]
        out = {"units": curves(dict(zip(labels, self.units)), title="the notes' six shifted ReLUs", xlabel="x",
                               ylabel="n_i(x)", x=self.x),
               "z": curves({"Z = -n1 - n2 - n3 + n4 + n5 + n6": self.z}, x=self.x, xlabel="x", ylabel="Z(x)",
                           title="their sum Z(x), by feed_forward in minigrad")}
        if not self.fits:
            return out
        text = FUNCTIONS[self.function][1]
        series = {f"target {text}": self.target, **{f"{h} hidden unit{'s' * (h > 1)}": f for h, f in self.fits.items()}}
        out["fits"] = curves(series, x=self.grid, xlabel="x", ylabel="f(x)", size=(6.0, 3.8),
                             title=f"one hidden layer of ReLUs fitted to {text} on [-{self.domain:g}, {self.domain:g}]")
        widths = list(self.fits)
        out["error"] = curves({"mean squared error on the training interval": self.summary["mse"]},
                              x=widths, xlabel="hidden units", ylabel="mean squared error", log=True, logx=True,
                              title="more units, smaller error")
        out["losses"] = curves({f"{h} units": v for h, v in self.losses.items()}, log=True,
                               title="training loss (mean squared error)")
        out["compact_domain"] = curves(
            {f"target {text}": self.wide_target, f"{widths[-1]} hidden unit{'s' * (widths[-1] > 1)}": self.wide_fit}, x=self.wide,
            xlabel="x", ylabel="f(x)", shade=(-self.domain, self.domain, "training interval"), size=(6.0, 3.8),
            title=f"compact domain: mean squared error {self.summary['mse_inside']:.2g} inside, "
                  f"{self.summary['mse_outside']:.2g} outside")
        return out


@technique("universal-approximation", "Universal approximation with one hidden layer", "Cybenko 1989", [
    Option("function", "choice", "wave", "function the networks are fitted to", choices=tuple(FUNCTIONS)),
    Option("hidden", "ints", [1, 2, 4, 8, 16, 32, 64, 128], "hidden-unit counts of the fitted networks", low=1, high=4096),
    Option("steps", "int", 3000, "Adam steps (full batch) per network", low=0, high=1_000_000, gallery=300),
    Option("lr", "float", 0.01, "Adam's learning rate (annealed along a half cosine)", low=0, open_low=True),
    Option("points", "int", 256, "training points, evenly spaced over the training interval", low=2),
    Option("domain", "float", 2.0, "the networks are trained on [-domain, domain]", low=0, open_low=True),
    Option("extent", "float", 3.0, "the compact-domain picture spans extent times the training interval", low=1),
    Option("seed", "int", 0, "seed of the initial weights", low=0),
], inputs="none")
def universal_approximation(*, function, hidden, steps, lr, points, domain, extent, seed):
    """The notes' six shifted ReLUs and their sum, networks of growing width fitted to ``function``
    on [-domain, domain], and the widest one off that interval, as a
    :class:`UniversalApproximationResult`. Ctrl-C stops the fitting and keeps the networks done."""
    x = np.linspace(-2.5, 2.5, 1001)
    with minigrad.no_grad():
        notes = notes_network()
        z = feed_forward(x[:, None], *notes).numpy()[:, 0]
        units = F.relu(minigrad.tensor(x[:, None]) @ notes[0] + notes[1]).numpy().T
    formula = notes_z(x)
    f = FUNCTIONS[function][0]
    grid = np.linspace(-domain, domain, points)
    target = f(grid)
    wide = np.linspace(-extent * domain, extent * domain, 2001)
    fits, losses, mse, interrupted, best = {}, {}, [], False, None
    rng = np.random.default_rng(seed)
    inputs = grid[:, None]
    for h in sorted(set(hidden)):
        params = _network(h, rng, domain)
        training = optimize(lambda step: ((feed_forward(inputs, *params)[:, 0] - target) ** 2).mean(), params, steps,
                            lr, f"fitting {h} hidden units")
        with minigrad.no_grad():
            fits[h] = feed_forward(inputs, *params).numpy()[:, 0]
            best = feed_forward(wide[:, None], *params).numpy()[:, 0]
        losses[h] = training.losses
        mse.append(float(((fits[h] - target) ** 2).mean()))
        if training.interrupted:
            interrupted = True
            break
    wide_target = f(wide)
    summary = {"z_max_error": float(np.abs(z - formula).max()), "hidden_units": list(fits), "mse": mse,
               "interrupted": interrupted}
    if fits:
        inside = np.abs(wide) <= domain
        summary.update(mse_inside=float(((best - wide_target)[inside] ** 2).mean()),
                       mse_outside=float(((best - wide_target)[~inside] ** 2).mean()))
    return UniversalApproximationResult(x, z, units, grid, target, fits, wide, wide_target, best, losses, function,
                                        domain, **summary)
