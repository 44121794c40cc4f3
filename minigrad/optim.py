"""minigrad.optim: optimizers that update tensors in place.

An optimizer holds a list of tensors (the parameters of a model, or just an input image for the
backprop-to-image techniques) and, on ``step()``, reads each tensor's ``.grad`` and writes the update
into its ``.data``. Updates are written with array-module code (``xp`` is NumPy or CuPy, whichever
holds the tensor), so the same optimizer runs on the CPU and on a GPU, and never records an autograd
graph: optimizer arithmetic is not part of the model.

Three optimizers, with PyTorch's semantics so results can be compared one to one:

* :class:`SGD` -- plain, momentum, Nesterov momentum, L2 weight decay.
* :class:`Adam` -- Kingma & Ba (2015), L2 weight decay, optional AMSGrad.
* :class:`LBFGS` -- limited-memory BFGS with the closure API, optional strong-Wolfe line search
  (written here from Nocedal & Wright, *Numerical Optimization*, 2nd ed., Algorithms 3.5 and 3.6),
  and an optional box ``bounds=(lo, hi)`` enforced by projection (used by style transfer on pixels
  and Szegedy et al.'s box-constrained adversarial search).

Typical use on an image::

    x = minigrad.tensor(img, requires_grad=True)
    opt = minigrad.optim.Adam([x], lr=0.05)
    for _ in range(100):
        opt.zero_grad()
        loss = objective(x)
        loss.backward()
        opt.step()
"""

import math
import numbers

import numpy as np

__all__ = ["Optimizer", "SGD", "Adam", "LBFGS"]


# --------------------------------------------------------------------------------------------------
# helpers
# --------------------------------------------------------------------------------------------------


def _xp(array):
    """The array module (numpy or cupy) that owns ``array``."""
    import minigrad

    return minigrad.get_array_module(array)


def _tensor_class():
    import minigrad

    return minigrad.Tensor


def _call(closure):
    """Run the user's closure with gradient recording on (also when step() runs under no_grad)."""
    import minigrad

    with minigrad.enable_grad():
        return closure()


def _loss_value(loss):
    """A closure's loss (a Tensor, an array or a number) as a Python float."""
    if hasattr(loss, "item"):
        return float(loss.item())
    return float(loss)


def _check_number(name, value, low=None, high=None, low_open=False, high_open=False):
    """Raise ValueError naming the hyperparameter unless ``value`` is a real number in range."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or not math.isfinite(value):
        raise ValueError(f"{name} must be a finite real number, got {value!r}")
    if low is not None and (value <= low if low_open else value < low):
        bound = ">" if low_open else ">="
        raise ValueError(f"{name} must be {bound} {low}, got {value!r}")
    if high is not None and (value >= high if high_open else value > high):
        bound = "<" if high_open else "<="
        raise ValueError(f"{name} must be {bound} {high}, got {value!r}")


# --------------------------------------------------------------------------------------------------
# base class
# --------------------------------------------------------------------------------------------------


class Optimizer:
    """Base class: parameter groups, per-tensor state, ``zero_grad``.

    ``params`` is an iterable of tensors, or of dicts ``{"params": [...], **hyperparameters}``
    (parameter groups, as in PyTorch: e.g. a smaller learning rate for a pretrained backbone). A
    single tensor is accepted too and treated as ``[tensor]``, which is the common case of
    optimizing one image.

    Every tensor must be a ``minigrad.Tensor`` with ``requires_grad=True`` and a floating dtype, and
    may appear only once: these are checked here so that a mistake (forgetting
    ``requires_grad=True`` on an image, passing a generator that was already consumed) is reported
    when the optimizer is built, not as a silent no-op later.

    Per-tensor state (momentum buffers, Adam moments) lives in ``self.state``, keyed by ``id`` of
    the tensor; the optimizer keeps the tensors alive, so the ids stay valid.
    """

    def __init__(self, params, defaults):
        self.defaults = dict(defaults)
        self.param_groups = []
        self.state = {}
        Tensor = _tensor_class()
        if isinstance(params, Tensor):
            params = [params]
        elif isinstance(params, dict):
            params = [params]
        try:
            items = list(params)
        except TypeError:
            raise TypeError(
                "params must be an iterable of Tensors (or of parameter-group dicts), "
                f"got {type(params).__name__}"
            ) from None
        if not items:
            raise ValueError(
                "optimizer got an empty parameter list: pass the tensors to optimize, e.g. "
                "model.parameters() or [image] (a generator can only be consumed once)"
            )
        if not isinstance(items[0], dict):
            items = [{"params": items}]
        seen = set()
        for group in items:
            self.add_param_group(group, _seen=seen)

    def _validate_group(self, group):
        """Check a group's hyperparameters; subclasses raise ValueError naming the bad one."""
        _check_number("lr", group["lr"], low=0.0)

    def add_param_group(self, group, _seen=None):
        """Add a parameter group (a dict with a "params" entry and optional hyperparameters)."""
        if not isinstance(group, dict) or "params" not in group:
            raise TypeError("a parameter group must be a dict with a 'params' entry")
        Tensor = _tensor_class()
        params = group["params"]
        params = [params] if isinstance(params, Tensor) else list(params)
        if not params:
            raise ValueError("optimizer got a parameter group with an empty parameter list")
        if _seen is None:
            _seen = {id(p) for g in self.param_groups for p in g["params"]}
        for i, p in enumerate(params):
            if not isinstance(p, Tensor):
                raise TypeError(
                    f"optimizer can only optimize minigrad Tensors, but parameter {i} is "
                    f"{type(p).__name__}"
                )
            if not p.requires_grad:
                raise ValueError(
                    f"parameter {i} (shape {tuple(p.shape)}) has requires_grad=False, so it would "
                    "never get a gradient; create it with requires_grad=True "
                    "(e.g. minigrad.tensor(img, requires_grad=True))"
                )
            if np.dtype(p.dtype).kind != "f":
                raise TypeError(
                    f"parameter {i} has dtype {p.dtype}; only floating-point tensors can be optimized"
                )
            if id(p) in _seen:
                raise ValueError(f"parameter {i} (shape {tuple(p.shape)}) appears more than once")
            _seen.add(id(p))
        unknown = set(group) - set(self.defaults) - {"params"}
        if unknown:
            raise TypeError(
                f"unknown hyperparameter(s) {sorted(unknown)} for {type(self).__name__}; "
                f"known: {sorted(self.defaults)}"
            )
        full = dict(self.defaults)
        full.update(group)
        full["params"] = params
        self._validate_group(full)
        self.param_groups.append(full)

    def _params(self):
        for group in self.param_groups:
            yield from group["params"]

    def zero_grad(self, set_to_none=True):
        """Clear every tensor's gradient before the next backward pass.

        With ``set_to_none=True`` (default, as in PyTorch) ``.grad`` becomes None, which also lets
        ``step`` skip tensors that got no gradient; otherwise it becomes an array of zeros.
        """
        for p in self._params():
            if p.grad is None:
                continue
            if set_to_none:
                p.grad = None
            else:
                p.grad = _xp(p.data).zeros_like(p.data)

    @staticmethod
    def _grad_of(p):
        """``p.grad`` checked against ``p``'s shape, or None when ``p`` got no gradient."""
        g = p.grad
        if g is None:
            return None
        if tuple(g.shape) != tuple(p.data.shape):
            raise ValueError(
                f"gradient of shape {tuple(g.shape)} does not match its tensor of shape "
                f"{tuple(p.data.shape)}"
            )
        return g

    def step(self, closure=None):  # pragma: no cover - abstract
        raise NotImplementedError

    def __repr__(self):
        lines = [f"{type(self).__name__} ("]
        for i, group in enumerate(self.param_groups):
            lines.append(f"Parameter Group {i}")
            for key in sorted(k for k in group if k != "params"):
                lines.append(f"    {key}: {group[key]}")
        lines.append(")")
        return "\n".join(lines)


# --------------------------------------------------------------------------------------------------
# SGD
# --------------------------------------------------------------------------------------------------


class SGD(Optimizer):
    r"""Stochastic gradient descent with optional (Nesterov) momentum and L2 weight decay.

    Per tensor, with gradient ``g`` (PyTorch's formulation, so runs are comparable)::

        g = g + weight_decay * p                 (L2 penalty folded into the gradient)
        b = g                       (first step)
        b = momentum * b + (1 - dampening) * g   (later steps)
        g = g + momentum * b  if nesterov else  b
        p = p - lr * g

    ``maximize=True`` ascends instead (``g`` is negated first): handy for activation maximization.
    Nesterov momentum needs ``momentum > 0`` and ``dampening == 0``, as in PyTorch.
    """

    def __init__(self, params, lr=1e-3, momentum=0.0, dampening=0.0, nesterov=False,
                 weight_decay=0.0, maximize=False):
        defaults = dict(lr=lr, momentum=momentum, dampening=dampening, nesterov=nesterov,
                        weight_decay=weight_decay, maximize=maximize)
        super().__init__(params, defaults)

    def _validate_group(self, group):
        super()._validate_group(group)
        _check_number("momentum", group["momentum"], low=0.0)
        _check_number("dampening", group["dampening"])
        _check_number("weight_decay", group["weight_decay"], low=0.0)
        if group["nesterov"] and (group["momentum"] <= 0 or group["dampening"] != 0):
            raise ValueError("nesterov momentum requires momentum > 0 and dampening == 0")

    def step(self, closure=None):
        """Apply one update to every tensor that has a gradient; returns ``closure()`` if given."""
        loss = _call(closure) if closure is not None else None
        for group in self.param_groups:
            lr, momentum, dampening = group["lr"], group["momentum"], group["dampening"]
            nesterov, wd = group["nesterov"], group["weight_decay"]
            for p in group["params"]:
                g = self._grad_of(p)
                if g is None:
                    continue
                data = p.data
                if group["maximize"]:
                    g = -g
                if wd != 0:
                    g = g + wd * data
                if momentum != 0:
                    state = self.state.setdefault(id(p), {})
                    buf = state.get("momentum_buffer")
                    if buf is None:
                        buf = state["momentum_buffer"] = g.copy()
                    else:
                        buf *= momentum
                        buf += (1 - dampening) * g
                    g = g + momentum * buf if nesterov else buf
                data -= lr * g  # in place: the tensor keeps its array (and any views of it)
        return loss


# --------------------------------------------------------------------------------------------------
# Adam
# --------------------------------------------------------------------------------------------------


class Adam(Optimizer):
    r"""Adam (Kingma & Ba, 2015) with bias correction, L2 weight decay and optional AMSGrad.

    Per tensor at step ``t`` with gradient ``g``::

        g = g + weight_decay * p
        m = beta1 * m + (1 - beta1) * g
        v = beta2 * v + (1 - beta2) * g * g
        (AMSGrad: v_max = max(v_max, v), used in place of v below)
        p = p - lr / (1 - beta1**t) * m / (sqrt(v) / sqrt(1 - beta2**t) + eps)

    ``eps`` is added after the bias correction of ``sqrt(v)``, as in PyTorch (the paper's
    algorithm 1), so results match ``torch.optim.Adam``. ``weight_decay`` is the coupled L2 form of
    ``torch.optim.Adam``, not AdamW's decoupled decay.
    """

    def __init__(self, params, lr=1e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.0,
                 amsgrad=False, maximize=False):
        defaults = dict(lr=lr, betas=tuple(betas), eps=eps, weight_decay=weight_decay,
                        amsgrad=amsgrad, maximize=maximize)
        super().__init__(params, defaults)

    def _validate_group(self, group):
        super()._validate_group(group)
        betas = group["betas"]
        if len(betas) != 2:
            raise ValueError(f"betas must be a pair (beta1, beta2), got {betas!r}")
        _check_number("betas[0]", betas[0], low=0.0, high=1.0, high_open=True)
        _check_number("betas[1]", betas[1], low=0.0, high=1.0, high_open=True)
        _check_number("eps", group["eps"], low=0.0)
        _check_number("weight_decay", group["weight_decay"], low=0.0)

    def step(self, closure=None):
        """Apply one Adam update to every tensor that has a gradient; returns ``closure()``."""
        loss = _call(closure) if closure is not None else None
        for group in self.param_groups:
            lr, (beta1, beta2), eps = group["lr"], group["betas"], group["eps"]
            wd = group["weight_decay"]
            for p in group["params"]:
                g = self._grad_of(p)
                if g is None:
                    continue
                data = p.data
                xp = _xp(data)
                if group["maximize"]:
                    g = -g
                if wd != 0:
                    g = g + wd * data
                state = self.state.setdefault(id(p), {})
                if not state:
                    state["step"] = 0
                    state["exp_avg"] = xp.zeros_like(data)
                    state["exp_avg_sq"] = xp.zeros_like(data)
                    if group["amsgrad"]:
                        state["max_exp_avg_sq"] = xp.zeros_like(data)
                state["step"] += 1
                t = state["step"]
                m, v = state["exp_avg"], state["exp_avg_sq"]
                m *= beta1
                m += (1 - beta1) * g
                v *= beta2
                v += (1 - beta2) * (g * g)
                if group["amsgrad"]:
                    vmax = state["max_exp_avg_sq"]
                    xp.maximum(vmax, v, out=vmax)
                    v = vmax
                step_size = lr / (1 - beta1**t)
                denom = xp.sqrt(v) / math.sqrt(1 - beta2**t)
                denom += eps
                data -= step_size * (m / denom)
        return loss


# --------------------------------------------------------------------------------------------------
# L-BFGS
# --------------------------------------------------------------------------------------------------


def _cubic_minimizer(x1, f1, g1, x2, f2, g2, lo=None, hi=None):
    """Minimizer of the cubic that interpolates f and f' at x1 and x2, clamped to [lo, hi].

    Nocedal & Wright eq. (3.59):
        d1 = g1 + g2 - 3 (f1 - f2) / (x1 - x2)
        d2 = sign(x2 - x1) sqrt(d1^2 - g1 g2)
        x  = x2 - (x2 - x1) (g2 + d2 - d1) / (g2 - g1 + 2 d2)
    ``[lo, hi]`` defaults to the interval between x1 and x2. When the cubic has no real minimizer
    (negative discriminant) or the data are degenerate, the midpoint of ``[lo, hi]`` is returned,
    i.e. the search falls back to bisection.
    """
    if lo is None:
        lo, hi = min(x1, x2), max(x1, x2)
    try:
        d1 = g1 + g2 - 3.0 * (f1 - f2) / (x1 - x2)
        disc = d1 * d1 - g1 * g2
        if disc >= 0.0:
            d2 = math.copysign(math.sqrt(disc), x2 - x1)
            x = x2 - (x2 - x1) * (g2 + d2 - d1) / (g2 - g1 + 2.0 * d2)
            if math.isfinite(x):
                return min(max(x, lo), hi)
    except (ZeroDivisionError, OverflowError, ValueError):
        pass
    return 0.5 * (lo + hi)


def _dot(a, b):
    return float(_xp(a).dot(a, b))


def strong_wolfe_line_search(phi, t, d, f0, g0, gtd0, c1=1e-4, c2=0.9, tolerance_change=1e-9,
                             max_ls=25):
    """Find a step length ``t`` along ``d`` satisfying the strong Wolfe conditions.

    Nocedal & Wright, *Numerical Optimization* (2nd ed., 2006), Algorithm 3.5 (bracketing) and
    Algorithm 3.6 (zoom). With phi(a) = f(x + a d) and phi'(a) = grad f(x + a d) . d, a step is
    accepted when

        phi(a) <= phi(0) + c1 a phi'(0)       (sufficient decrease)
        |phi'(a)| <= c2 |phi'(0)|             (strong curvature condition)

    Bracketing (Alg. 3.5): try a = t; if the trial violates sufficient decrease, or does not
    improve on the previous trial, or the slope has turned non-negative, an interval containing an
    acceptable step is known and we zoom into it. Otherwise extrapolate: the next trial is the
    minimizer of the cubic through the last two trials, restricted to
    [a + 0.01 (a - a_prev), 10 a] so the search both moves and does not explode.

    Zoom (Alg. 3.6): keep a_lo (the best point satisfying sufficient decrease) and a_hi (so that
    phi'(a_lo)(a_hi - a_lo) < 0) and shrink the interval with cubic interpolation. A trial within
    10% of the interval width from an end is moved to 10% from that end when the previous trial
    was also that close (or it is outside the interval) -- the safeguard of M. Schmidt's minFunc,
    which PyTorch's LBFGS also uses -- so a stagnating interpolation cannot stall the search.

    This differs from ``torch.optim.LBFGS`` only in rare corner cases, where it follows the book:
    a_lo is always a point satisfying sufficient decrease (torch takes the lower of the two
    function values), and the "no improvement over the previous trial" test applies from the
    second trial on. It also never exceeds ``max_ls`` evaluations in total, where torch's zoom may
    make one more (its counter skips the first trial), so when LBFGS's ``max_eval`` budget binds,
    torch can take one extra closure call per step.

    Arguments:
        phi: callable ``phi(a) -> (f, g)``, the loss (float) and flat gradient at ``x + a d``.
        t: initial trial step. d: search direction (flat array). f0, g0, gtd0: phi(0), the
        gradient at x and phi'(0) (must be negative: d is a descent direction).
        tolerance_change: stop zooming when the interval, scaled by max|d|, is below this.
        max_ls: maximum number of evaluations of ``phi``.

    Returns ``(f, g, t, n_evals)``: loss and gradient at the accepted step ``t``. If no acceptable
    step is found within ``max_ls`` evaluations, the best point found is returned (possibly
    ``t = 0``, which leaves x unchanged).
    """
    d_norm = float(_xp(d).abs(d).max())
    # the previous trial ("i - 1"): starts at a = 0
    t_prev, f_prev, g_prev, gtd_prev = 0.0, f0, g0, gtd0
    f_new, g_new = phi(t)
    gtd_new = _dot(g_new, d)
    n_evals = 1
    i = 1
    lo = hi = None
    while True:
        if f_new > f0 + c1 * t * gtd0 or (i > 1 and f_new >= f_prev):
            lo, hi = (t_prev, f_prev, g_prev, gtd_prev), (t, f_new, g_new, gtd_new)
            break
        if abs(gtd_new) <= -c2 * gtd0:
            return f_new, g_new, t, n_evals
        if gtd_new >= 0:
            lo, hi = (t, f_new, g_new, gtd_new), (t_prev, f_prev, g_prev, gtd_prev)
            break
        if n_evals >= max_ls:
            # still descending after max_ls trials: take the furthest (and lowest) point
            return f_new, g_new, t, n_evals
        t_next = _cubic_minimizer(t_prev, f_prev, gtd_prev, t, f_new, gtd_new,
                                  lo=t + 0.01 * (t - t_prev), hi=10.0 * t)
        t_prev, f_prev, g_prev, gtd_prev = t, f_new, g_new, gtd_new
        t = t_next
        f_new, g_new = phi(t)
        gtd_new = _dot(g_new, d)
        n_evals += 1
        i += 1

    # zoom (Algorithm 3.6): lo/hi are (t, f, g, gtd)
    near_end_before = False
    while n_evals < max_ls:
        a, b = min(lo[0], hi[0]), max(lo[0], hi[0])
        if (b - a) * d_norm < tolerance_change:
            break
        t = _cubic_minimizer(lo[0], lo[1], lo[3], hi[0], hi[1], hi[3])
        margin = 0.1 * (b - a)
        if min(b - t, t - a) < margin:
            if near_end_before or t >= b or t <= a:
                t = b - margin if abs(t - b) < abs(t - a) else a + margin
                near_end_before = False
            else:
                near_end_before = True
        else:
            near_end_before = False
        f_new, g_new = phi(t)
        gtd_new = _dot(g_new, d)
        n_evals += 1
        if f_new > f0 + c1 * t * gtd0 or f_new >= lo[1]:
            hi = (t, f_new, g_new, gtd_new)
        else:
            if abs(gtd_new) <= -c2 * gtd0:
                return f_new, g_new, t, n_evals
            if gtd_new * (hi[0] - lo[0]) >= 0:
                hi = lo
            lo = (t, f_new, g_new, gtd_new)
    return lo[1], lo[2], lo[0], n_evals


class LBFGS(Optimizer):
    r"""Limited-memory BFGS with the closure API of ``torch.optim.LBFGS``.

    ``step(closure)`` runs up to ``max_iter`` L-BFGS iterations (at most ``max_eval`` closure
    calls). ``closure()`` must zero the gradients, compute the loss, call ``backward()`` and return
    the loss (a Tensor or a float)::

        opt = LBFGS([img], max_iter=20, line_search_fn="strong_wolfe")
        def closure():
            opt.zero_grad()
            loss = objective(img)
            loss.backward()
            return loss
        for _ in range(10):
            opt.step(closure)

    All tensors are viewed as one flat vector. The search direction comes from the two-loop
    recursion (Nocedal & Wright, Algorithm 7.4) over the last ``history_size`` curvature pairs
    ``(s, y)`` (a pair is kept only when ``y.s > 1e-10``, which keeps the implicit inverse Hessian
    positive definite), with the initial scaling ``H0 = y.s / y.y`` (eq. 7.20).

    Step length: with ``line_search_fn=None`` a fixed step ``lr`` (the very first iteration uses
    ``lr * min(1, 1/|g|_1)``, because the first direction is the raw gradient); with
    ``"strong_wolfe"`` :func:`strong_wolfe_line_search` starting from that step, whose closure
    calls count toward ``max_eval`` (it gets the budget that is left, but always makes at least one
    trial; with the default ``max_eval = max_iter * 5 // 4`` this is also PyTorch's rule, so
    ``max_iter=1`` gives a single-trial search unless ``max_eval`` is raised). Iterations stop
    when the largest gradient entry is ``<= tolerance_grad``, or the step or the loss change falls
    below ``tolerance_change``. The history is kept between ``step`` calls, as in PyTorch.

    ``bounds=(lo, hi)`` (scalars, arrays broadcastable to every tensor, or None for an open side)
    keeps the tensors inside a box by *projection*: every point the optimizer evaluates or moves
    to is clipped into the box; variables held at a bound (the gradient pushes them outward) are
    left out of the direction, which makes it a descent direction along the projected path;
    curvature pairs use the actual (projected) displacement; and convergence is judged on the
    projected gradient. This is a practical heuristic for pixel ranges and
    Szegedy-style box-constrained attacks; it is not the L-BFGS-B algorithm (Byrd, Lu, Nocedal &
    Zhu 1995), which computes a generalized Cauchy point and minimizes over the free subspace, and
    it has none of its convergence guarantees.

    Only one parameter group is supported, and all tensors must live on the same device.
    """

    def __init__(self, params, lr=1.0, max_iter=20, max_eval=None, tolerance_grad=1e-7,
                 tolerance_change=1e-9, history_size=100, line_search_fn=None, bounds=None):
        if max_eval is None:
            max_eval = max_iter * 5 // 4
        defaults = dict(lr=lr, max_iter=max_iter, max_eval=max_eval, tolerance_grad=tolerance_grad,
                        tolerance_change=tolerance_change, history_size=history_size,
                        line_search_fn=line_search_fn, bounds=bounds)
        super().__init__(params, defaults)
        if len(self.param_groups) != 1:
            raise ValueError("LBFGS supports only one parameter group (pass a flat list of tensors)")
        self._plist = self.param_groups[0]["params"]
        self._lbfgs = self.state.setdefault(id(self._plist[0]), {"func_evals": 0, "n_iter": 0})

    def _validate_group(self, group):
        _check_number("lr", group["lr"], low=0.0, low_open=True)
        for name in ("max_iter", "max_eval", "history_size"):
            v = group[name]
            if isinstance(v, bool) or not isinstance(v, numbers.Integral) or v < 1:
                raise ValueError(f"{name} must be a positive integer, got {v!r}")
        _check_number("tolerance_grad", group["tolerance_grad"], low=0.0)
        _check_number("tolerance_change", group["tolerance_change"], low=0.0)
        if group["line_search_fn"] not in (None, "strong_wolfe"):
            raise ValueError(
                f"line_search_fn must be None or 'strong_wolfe', got {group['line_search_fn']!r}"
            )
        bounds = group["bounds"]
        if bounds is not None:
            if not isinstance(bounds, (tuple, list)) or len(bounds) != 2:
                raise ValueError(f"bounds must be a pair (lo, hi), got {bounds!r}")
            lo, hi = bounds
            if lo is None and hi is None:
                group["bounds"] = None
            elif lo is not None and hi is not None and np.any(np.asarray(lo) > np.asarray(hi)):
                raise ValueError("bounds must satisfy lo <= hi everywhere")

    # --- flat-vector views of the tensors -------------------------------------------------------

    def _flat_grad(self):
        parts = []
        for p in self._plist:
            g = self._grad_of(p)
            if g is None:
                parts.append(_xp(p.data).zeros(p.data.size, dtype=p.data.dtype))
            else:
                parts.append(g.reshape(-1))
        xp = _xp(parts[0])
        return xp.concatenate(parts) if len(parts) > 1 else parts[0].copy()

    def _flat_params(self):
        parts = [p.data.reshape(-1) for p in self._plist]
        return _xp(parts[0]).concatenate(parts)

    def _clone_params(self):
        return [p.data.copy() for p in self._plist]

    def _set_params(self, values):
        for p, v in zip(self._plist, values):
            p.data[...] = v

    def _project(self):
        bounds = self.param_groups[0]["bounds"]
        if bounds is None:
            return
        lo, hi = bounds
        for p in self._plist:
            xp = _xp(p.data)
            xp.clip(p.data, lo, hi, out=p.data)

    def _add_step(self, t, d):
        """x <- P(x + t d), in place, tensor by tensor."""
        offset = 0
        for p in self._plist:
            n = p.data.size
            p.data += t * d[offset:offset + n].reshape(p.data.shape)
            offset += n
        self._project()

    def _at_bound_masks(self):
        """Flat boolean masks (at lower bound, at upper bound), or None without bounds."""
        bounds = self.param_groups[0]["bounds"]
        if bounds is None:
            return None
        lo, hi = bounds
        at_lo, at_hi = [], []
        for p in self._plist:
            xp = _xp(p.data)
            at_lo.append((p.data <= lo).reshape(-1) if lo is not None
                         else xp.zeros(p.data.size, dtype=bool))
            at_hi.append((p.data >= hi).reshape(-1) if hi is not None
                         else xp.zeros(p.data.size, dtype=bool))
        xp = _xp(at_lo[0])
        return xp.concatenate(at_lo), xp.concatenate(at_hi)

    def _binding(self, g):
        """Flat mask of the variables held by a bound (at it, and the gradient pushes outward).

        None without bounds. These variables are left out of the L-BFGS direction: the gradient
        is zeroed there before the two-loop recursion and the direction after it, so that
        ``d = -P H P g`` (P: keep the free variables) is a descent direction on the projection
        arc ``P_box(x + t d)`` whenever the projected gradient is non-zero (Bertsekas, 1982).
        """
        masks = self._at_bound_masks()
        if masks is None:
            return None
        at_lo, at_hi = masks
        return (at_lo & (g > 0)) | (at_hi & (g < 0))

    @staticmethod
    def _zero_where(mask, v):
        if mask is None:
            return v
        xp = _xp(v)
        return xp.where(mask, xp.zeros((), dtype=v.dtype), v)

    def _grad_converged(self, g, tol):
        """Largest entry of the projected gradient (the gradient without held variables) <= tol."""
        pg = self._zero_where(self._binding(g), g)
        return float(_xp(pg).abs(pg).max()) <= tol

    # --- the iteration ---------------------------------------------------------------------------

    def step(self, closure=None):
        """Run up to ``max_iter`` iterations; returns the loss from the first closure call."""
        if closure is None or not callable(closure):
            raise TypeError(
                "LBFGS.step(closure) needs a closure that zeroes the gradients, computes the loss, "
                "calls loss.backward() and returns the loss"
            )
        group = self.param_groups[0]
        lr, max_iter, max_eval = group["lr"], group["max_iter"], group["max_eval"]
        tol_grad, tol_change = group["tolerance_grad"], group["tolerance_change"]
        history_size, line_search = group["history_size"], group["line_search_fn"]
        bounded = group["bounds"] is not None
        st = self._lbfgs

        if bounded:
            self._project()
        orig_loss = _call(closure)
        loss = _loss_value(orig_loss)
        if not math.isfinite(loss):
            raise FloatingPointError(f"LBFGS: the closure returned a non-finite loss ({loss})")
        n_evals = 1
        st["func_evals"] += 1
        g = self._flat_grad()
        if self._grad_converged(g, tol_grad):
            return orig_loss

        d, t = st.get("d"), st.get("t")
        s_last = st.get("s")
        old_y, old_s, rho = st.get("old_y"), st.get("old_s"), st.get("rho")
        h_diag, prev_g, prev_loss = st.get("h_diag"), st.get("prev_g"), st.get("prev_loss")

        n_iter = 0
        while n_iter < max_iter:
            n_iter += 1
            st["n_iter"] += 1

            # ---- direction: steepest descent first, then the two-loop recursion ----
            held = self._binding(g) if bounded else None
            g_free = self._zero_where(held, g)
            if st["n_iter"] == 1:
                d = -g_free
                old_y, old_s, rho = [], [], []
                h_diag = 1.0
            else:
                y = g - prev_g
                s = s_last if s_last is not None else d * t
                ys = _dot(y, s)
                if ys > 1e-10:
                    if len(old_y) == history_size:
                        old_y.pop(0)
                        old_s.pop(0)
                        rho.pop(0)
                    old_y.append(y)
                    old_s.append(s)
                    rho.append(1.0 / ys)
                    h_diag = ys / _dot(y, y)
                q = -g_free
                alpha = [0.0] * len(old_y)
                for i in range(len(old_y) - 1, -1, -1):
                    alpha[i] = _dot(old_s[i], q) * rho[i]
                    q -= alpha[i] * old_y[i]
                d = q * h_diag
                for i in range(len(old_y)):
                    beta = _dot(old_y[i], d) * rho[i]
                    d += (alpha[i] - beta) * old_s[i]
            d = self._zero_where(held, d)

            prev_g, prev_loss = g, loss
            if st["n_iter"] == 1:
                t = min(1.0, 1.0 / float(_xp(g_free).abs(g_free).sum())) * lr
            else:
                t = lr
            gtd = _dot(g, d)
            if gtd > -tol_change:  # not a descent direction (or a negligible one): stop
                s_last = None
                break

            x_before = self._flat_params() if bounded else None
            ls_evals = 0
            converged = False
            if line_search == "strong_wolfe":
                x0 = self._clone_params()

                def phi(step, x0=x0, d=d):
                    self._add_step(step, d)
                    f = _loss_value(_call(closure))
                    gg = self._flat_grad()
                    self._set_params(x0)
                    return f, gg

                loss, g, t, ls_evals = strong_wolfe_line_search(
                    phi, t, d, loss, g, gtd, tolerance_change=tol_change,
                    max_ls=max_eval - n_evals)
                self._add_step(t, d)
                converged = self._grad_converged(g, tol_grad)
            else:
                self._add_step(t, d)
                if n_iter != max_iter:
                    loss = _loss_value(_call(closure))
                    g = self._flat_grad()
                    converged = self._grad_converged(g, tol_grad)
                    ls_evals = 1
            s_last = self._flat_params() - x_before if bounded else None
            n_evals += ls_evals
            st["func_evals"] += ls_evals
            if not math.isfinite(loss):
                raise FloatingPointError(
                    f"LBFGS: the loss became non-finite ({loss}) after a step of length {t}; "
                    "try a smaller lr or line_search_fn='strong_wolfe'"
                )

            # ---- stopping tests ----
            if n_iter == max_iter or n_evals >= max_eval or converged:
                break
            moved = s_last if bounded else d * t
            if float(_xp(moved).abs(moved).max()) <= tol_change:
                break
            if abs(loss - prev_loss) < tol_change:
                break

        st.update(d=d, t=t, s=s_last, old_y=old_y, old_s=old_s, rho=rho, h_diag=h_diag,
                  prev_g=prev_g, prev_loss=prev_loss)
        return orig_loss
