"""minigrad.optim: SGD and Adam against torch.optim step by step, L-BFGS against scipy.optimize and
torch.optim.LBFGS, optimization of an image tensor, box projection, and clear errors on bad input."""

import numpy as np
import pytest

import minigrad
from minigrad import optim


# ----- objectives written with minigrad ops ---------------------------------------------------------


def rosenbrock(x):
    """sum 100 (x[i+1] - x[i]^2)^2 + (1 - x[i])^2, minimum 0 at (1, ..., 1). Works on minigrad and torch."""
    return (100 * (x[1:] - x[:-1] ** 2) ** 2 + (1 - x[:-1]) ** 2).sum()


def rosenbrock_np(x):
    f = np.sum(100 * (x[1:] - x[:-1] ** 2) ** 2 + (1 - x[:-1]) ** 2)
    g = np.zeros_like(x)
    g[:-1] = -400 * x[:-1] * (x[1:] - x[:-1] ** 2) - 2 * (1 - x[:-1])
    g[1:] += 200 * (x[1:] - x[:-1] ** 2)
    return f, g


def spd_quadratic(n, seed, cond=50.0):
    """A symmetric positive-definite A (condition number ``cond``) and b: f(x) = x'Ax/2 - b'x."""
    rng = np.random.default_rng(seed)
    q, _ = np.linalg.qr(rng.standard_normal((n, n)))
    a = q @ np.diag(np.geomspace(1.0, cond, n)) @ q.T
    return (a + a.T) / 2, rng.standard_normal(n)


def quadratic(x, a, b):
    return 0.5 * (x * (x @ a)).sum() - (x * b).sum()


def make_closure(opt, x, fn):
    def closure():
        opt.zero_grad()
        loss = fn(x)
        loss.backward()
        return loss

    return closure


# ----- SGD and Adam against torch.optim -------------------------------------------------------------


def regression_problem(dtype):
    rng = np.random.default_rng(1)
    return {
        "x": rng.standard_normal((16, 5)).astype(dtype),
        "t": rng.standard_normal((16, 3)).astype(dtype),
        "w": rng.standard_normal((3, 5)).astype(dtype) * 0.5,
        "b": rng.standard_normal(3).astype(dtype) * 0.1,
    }


def regression_loss(w, b, x, t):
    """Mean squared error plus a quartic term, so the gradient changes along the run.

    Constants are NumPy scalars of the tensors' dtype (a Python float would become float32 and
    perturb a float64 comparison), and the mean is written as sum / count for the same reason.
    """
    dtype = w.dtype.type
    residual = x @ w.transpose(1, 0) + b - t
    return (residual**2).sum() * dtype(1.0 / residual.size) + dtype(0.05) * (w**4).sum()


def run_both(make_ours, make_theirs, dtype=np.float64, steps=6):
    """Run the same problem with our optimizer and torch's; return both parameter trajectories."""
    torch = pytest.importorskip("torch")
    p = regression_problem(dtype)
    w, b = minigrad.tensor(p["w"], requires_grad=True), minigrad.tensor(p["b"], requires_grad=True)
    tw, tb = torch.tensor(p["w"], requires_grad=True), torch.tensor(p["b"], requires_grad=True)
    ours, theirs = make_ours([w, b]), make_theirs([tw, tb])
    x, t = minigrad.tensor(p["x"]), minigrad.tensor(p["t"])
    txs, tts = torch.tensor(p["x"]), torch.tensor(p["t"])
    traj_ours, traj_theirs = [], []
    for _ in range(steps):
        ours.zero_grad()
        regression_loss(w, b, x, t).backward()
        ours.step()
        theirs.zero_grad()
        tloss = ((txs @ tw.T + tb - tts) ** 2).mean() + 0.05 * (tw**4).sum()
        tloss.backward()
        theirs.step()
        traj_ours.append(np.concatenate([w.numpy().ravel(), b.numpy().ravel()]))
        traj_theirs.append(np.concatenate([tw.detach().numpy().ravel(), tb.detach().numpy().ravel()]))
    return np.array(traj_ours), np.array(traj_theirs)


SGD_CASES = [
    dict(lr=0.1),
    dict(lr=0.05, momentum=0.9),
    dict(lr=0.05, momentum=0.9, dampening=0.3),
    dict(lr=0.05, momentum=0.9, nesterov=True),
    dict(lr=0.05, momentum=0.5, weight_decay=0.1),
    dict(lr=0.05, momentum=0.9, nesterov=True, weight_decay=0.01),
    dict(lr=0.05, weight_decay=0.2, maximize=True),
]


@pytest.mark.parametrize("kwargs", SGD_CASES, ids=lambda k: ",".join(f"{a}={v}" for a, v in k.items()))
def test_sgd_matches_torch(kwargs):
    torch = pytest.importorskip("torch")
    ours, theirs = run_both(lambda p: optim.SGD(p, **kwargs), lambda p: torch.optim.SGD(p, **kwargs))
    np.testing.assert_allclose(ours, theirs, rtol=1e-10, atol=1e-12)
    assert np.abs(ours[-1] - ours[0]).max() > 1e-3  # it actually moved


ADAM_CASES = [
    dict(lr=0.01),
    dict(lr=0.05, betas=(0.5, 0.9)),
    dict(lr=0.01, weight_decay=0.1),
    dict(lr=0.01, eps=1e-3),
    dict(lr=0.02, amsgrad=True),
    dict(lr=0.01, maximize=True),
]


@pytest.mark.parametrize("kwargs", ADAM_CASES, ids=lambda k: ",".join(f"{a}={v}" for a, v in k.items()))
def test_adam_matches_torch(kwargs):
    torch = pytest.importorskip("torch")
    ours, theirs = run_both(lambda p: optim.Adam(p, **kwargs), lambda p: torch.optim.Adam(p, **kwargs), steps=8)
    np.testing.assert_allclose(ours, theirs, rtol=1e-9, atol=1e-12)


def test_float32_sgd_and_adam_track_torch():
    torch = pytest.importorskip("torch")
    ours, theirs = run_both(lambda p: optim.SGD(p, lr=0.05, momentum=0.9, nesterov=True),
                            lambda p: torch.optim.SGD(p, lr=0.05, momentum=0.9, nesterov=True),
                            dtype=np.float32)
    np.testing.assert_allclose(ours, theirs, rtol=1e-5, atol=1e-6)
    ours, theirs = run_both(lambda p: optim.Adam(p, lr=0.01), lambda p: torch.optim.Adam(p, lr=0.01), dtype=np.float32)
    np.testing.assert_allclose(ours, theirs, rtol=1e-5, atol=1e-6)


def test_parameter_groups_match_torch():
    torch = pytest.importorskip("torch")

    def groups(p):
        return [{"params": [p[0]], "lr": 0.01}, {"params": [p[1]]}]

    ours, theirs = run_both(lambda p: optim.SGD(groups(p), lr=0.2, momentum=0.9),
                            lambda p: torch.optim.SGD(groups(p), lr=0.2, momentum=0.9))
    np.testing.assert_allclose(ours, theirs, rtol=1e-10, atol=1e-12)


def test_step_updates_data_in_place_and_skips_tensors_without_grad():
    a = minigrad.tensor(np.ones(3), requires_grad=True)
    b = minigrad.tensor(np.ones(3), requires_grad=True)
    array_a, array_b = a.data, b.data
    opt = optim.Adam([a, b], lr=0.1)
    (a * 2.0).sum().backward()
    opt.step()
    assert a.data is array_a and b.data is array_b
    assert np.all(a.data < 1) and np.all(b.data == 1)  # b had no gradient: untouched


def test_zero_grad_set_to_none_or_zeros():
    x = minigrad.tensor(np.ones(4), requires_grad=True)
    opt = optim.SGD([x], lr=0.1)
    (x * x).sum().backward()
    opt.zero_grad(set_to_none=False)
    assert x.grad is not None and np.all(x.grad == 0)
    opt.zero_grad()
    assert x.grad is None


def test_sgd_and_adam_ascend_an_image():
    """Activation maximization on an image: the optimizer is given the image itself.

    The objective, mean activation of one conv unit minus 0.05 |img|^2, is concave with its
    maximum at img* = 10 c (c: the gradient of the linear part), so progress can be measured.
    """
    rng = np.random.default_rng(0)
    w = minigrad.tensor(rng.standard_normal((4, 3, 3, 3)).astype(np.float32))

    def objective(img):
        return minigrad.functional.conv2d(img, w, padding=1)[0, 2].mean() - 0.05 * (img * img).sum()

    probe = minigrad.tensor(np.zeros((1, 3, 16, 16), np.float32), requires_grad=True)
    objective(probe).backward()
    best = objective(minigrad.tensor(10 * probe.grad)).item()
    for make in (lambda p: optim.SGD(p, lr=1.0, momentum=0.5), lambda p: optim.Adam(p, lr=0.02)):
        img = minigrad.tensor(rng.standard_normal((1, 3, 16, 16)).astype(np.float32) * 0.1, requires_grad=True)
        opt = make([img])
        start = objective(img).item()
        for _ in range(40):
            opt.zero_grad()
            (-objective(img)).backward()
            opt.step()
        assert img.dtype == np.float32 and img.grad.dtype == np.float32
        assert best - objective(img).item() < 0.05 * (best - start)


# ----- L-BFGS ---------------------------------------------------------------------------------------


def test_strong_wolfe_step_satisfies_the_conditions():
    """On Rosenbrock from (-1.2, 1) the first trial overshoots; the returned step is a Wolfe point."""
    x0 = np.array([-1.2, 1.0])
    f0, g0 = rosenbrock_np(x0)
    d = -g0
    gtd0 = float(g0 @ d)
    evals = []

    def phi(t):
        evals.append(t)
        return rosenbrock_np(x0 + t * d)

    f, g, t, n = optim.strong_wolfe_line_search(phi, 1.0 / np.abs(g0).sum(), d, f0, g0, gtd0)
    assert n == len(evals) >= 2
    assert f <= f0 + 1e-4 * t * gtd0  # sufficient decrease
    assert abs(float(g @ d)) <= 0.9 * abs(gtd0)  # strong curvature condition
    np.testing.assert_allclose((f, *g), (*[rosenbrock_np(x0 + t * d)[0]], *rosenbrock_np(x0 + t * d)[1]))


def test_cubic_minimizer_is_exact_on_a_cubic():
    """The interpolating cubic of a cubic is itself: the minimizer is exact, in either order."""
    c = lambda t: (t - 1.0) * (t - 3.0) * (t + 2.0)  # local minimum at (2 + sqrt(19)) / 3
    dc = lambda t: 3 * t * t - 4 * t - 5
    exact = (2 + np.sqrt(19)) / 3
    for x1, x2 in [(0.0, 4.0), (4.0, 0.0), (1.5, 2.5)]:
        got = optim._cubic_minimizer(x1, c(x1), dc(x1), x2, c(x2), dc(x2), lo=-10, hi=10)
        assert got == pytest.approx(exact, rel=1e-12)
    # clamped to the bounds; bisection when the cubic has no minimizer
    assert optim._cubic_minimizer(0.0, c(0.0), dc(0.0), 4.0, c(4.0), dc(4.0), lo=0.0, hi=1.0) == 1.0
    assert optim._cubic_minimizer(0.0, 0.0, 2.0, 1.0, 1.0, 2.0, lo=0.0, hi=1.0) == 0.5  # d1^2 < g1 g2


@pytest.mark.parametrize("n", [2, 10])
def test_lbfgs_minimizes_rosenbrock_like_scipy(n):
    scipy_optimize = pytest.importorskip("scipy.optimize")
    x0 = np.tile([-1.2, 1.0], n // 2)
    ref = scipy_optimize.minimize(rosenbrock_np, x0, jac=True, method="L-BFGS-B",
                                  options=dict(gtol=1e-10, ftol=1e-15, maxiter=1000))
    x = minigrad.tensor(x0.copy(), requires_grad=True)
    opt = optim.LBFGS([x], max_iter=100, line_search_fn="strong_wolfe", tolerance_grad=1e-10,
                      tolerance_change=1e-14)
    closure = make_closure(opt, x, rosenbrock)
    for _ in range(10):
        opt.step(closure)
    np.testing.assert_allclose(x.numpy(), ref.x, atol=1e-5)
    np.testing.assert_allclose(x.numpy(), np.ones(n), atol=1e-6)
    assert rosenbrock(x).item() < 1e-10
    assert opt.state[id(x)]["func_evals"] < 400


@pytest.mark.parametrize("line_search_fn", ["strong_wolfe", None])
def test_lbfgs_minimizes_a_convex_quadratic_like_scipy(line_search_fn):
    scipy_optimize = pytest.importorskip("scipy.optimize")
    a, b = spd_quadratic(20, seed=3)
    ref = scipy_optimize.minimize(lambda v: (0.5 * v @ a @ v - b @ v, a @ v - b), np.zeros(20), jac=True,
                                  method="L-BFGS-B", options=dict(gtol=1e-12, ftol=1e-16))
    x = minigrad.tensor(np.zeros(20), requires_grad=True)
    opt = optim.LBFGS([x], lr=1.0 if line_search_fn else 0.5, max_iter=200, history_size=10,
                      line_search_fn=line_search_fn, tolerance_grad=1e-12, tolerance_change=0.0)
    opt.step(make_closure(opt, x, lambda v: quadratic(v, minigrad.tensor(a), minigrad.tensor(b))))
    exact = np.linalg.solve(a, b)
    # float64 resolves f near its minimum only to ~1e-16 relative, hence x only to ~1e-8
    np.testing.assert_allclose(ref.x, exact, atol=1e-6)
    np.testing.assert_allclose(x.numpy(), exact, atol=1e-7)
    np.testing.assert_allclose(x.numpy(), ref.x, atol=1e-6)


@pytest.mark.parametrize("problem", ["rosenbrock", "quadratic", "quadratic_fixed_step"])
def test_lbfgs_iterates_match_torch(problem):
    """Same closure in both frameworks, float64: the iterates after every step() agree closely."""
    torch = pytest.importorskip("torch")
    if problem == "rosenbrock":
        x0 = np.array([-1.2, 1.0, -0.5, 0.3, 2.0])
        ours_fn = theirs_fn = rosenbrock
        kwargs = dict(line_search_fn="strong_wolfe", history_size=10, max_iter=20)
    else:
        a, b = spd_quadratic(8, seed=7, cond=200.0)
        x0 = np.linspace(-1, 1, 8)
        ma, mb, ta, tb = minigrad.tensor(a), minigrad.tensor(b), torch.tensor(a), torch.tensor(b)
        ours_fn = lambda v: quadratic(v, ma, mb)
        theirs_fn = lambda v: 0.5 * (v * (v @ ta)).sum() - (v * tb).sum()
        kwargs = (dict(line_search_fn="strong_wolfe", history_size=4, max_iter=3) if problem == "quadratic"
                  else dict(lr=0.1, history_size=4, max_iter=5))
    x, tx = minigrad.tensor(x0.copy(), requires_grad=True), torch.tensor(x0.copy(), requires_grad=True)
    ours, theirs = optim.LBFGS([x], **kwargs), torch.optim.LBFGS([tx], **kwargs)
    ours_closure, theirs_closure = make_closure(ours, x, ours_fn), make_closure(theirs, tx, theirs_fn)
    for step in range(6):
        loss_ours, loss_theirs = ours.step(ours_closure), theirs.step(theirs_closure)
        assert loss_ours.item() == pytest.approx(loss_theirs.item(), rel=1e-6, abs=1e-12)
        np.testing.assert_allclose(x.numpy(), tx.detach().numpy(), rtol=1e-7, atol=1e-9, err_msg=f"step {step}")
    assert ours.state[id(x)]["func_evals"] == theirs.state[tx]["func_evals"]
    assert ours.state[id(x)]["n_iter"] == theirs.state[tx]["n_iter"]


def test_lbfgs_on_an_image_tensor_with_and_without_bounds():
    """Reconstruct an image from conv features (style-transfer-like); with bounds it stays in range."""
    rng = np.random.default_rng(0)
    w = minigrad.tensor(rng.standard_normal((8, 3, 3, 3)).astype(np.float32) * 0.3)
    target_img = rng.uniform(0, 1, (1, 3, 12, 12)).astype(np.float32)
    target = minigrad.functional.conv2d(minigrad.tensor(target_img), w, padding=1).data

    def loss_fn(img):
        diff = minigrad.functional.conv2d(img, w, padding=1) - target
        return (diff * diff).mean()

    for bounds in (None, (0.0, 1.0)):
        img = minigrad.tensor(np.full((1, 3, 12, 12), 0.5, np.float32), requires_grad=True)
        data = img.data
        opt = optim.LBFGS([img], max_iter=50, line_search_fn="strong_wolfe", bounds=bounds)
        closure = make_closure(opt, img, loss_fn)
        start = loss_fn(img).item()
        for _ in range(3):
            opt.step(closure)
        assert img.data is data and img.dtype == np.float32
        assert loss_fn(img).item() < 1e-3 * start
        if bounds:
            assert img.data.min() >= 0.0 and img.data.max() <= 1.0


def test_lbfgs_box_projection_reaches_the_constrained_minimum():
    """min 0.5 x'Ax - b'x on a box: the projected iteration lands on scipy's L-BFGS-B answer."""
    scipy_optimize = pytest.importorskip("scipy.optimize")
    a, b = spd_quadratic(12, seed=11, cond=10.0)
    b = 3 * b  # the unconstrained minimum lies well outside the box, so several bounds are active
    lo, hi = -0.5, 0.5
    ref = scipy_optimize.minimize(lambda v: (0.5 * v @ a @ v - b @ v, a @ v - b), np.zeros(12), jac=True,
                                  method="L-BFGS-B", bounds=[(lo, hi)] * 12,
                                  options=dict(gtol=1e-12, ftol=1e-16))
    assert np.sum(np.isclose(np.abs(ref.x), 0.5)) >= 3
    x = minigrad.tensor(np.zeros(12), requires_grad=True)
    opt = optim.LBFGS([x], max_iter=200, line_search_fn="strong_wolfe", bounds=(lo, hi),
                      tolerance_grad=1e-10, tolerance_change=1e-13)
    closure = make_closure(opt, x, lambda v: quadratic(v, minigrad.tensor(a), minigrad.tensor(b)))
    for _ in range(3):
        opt.step(closure)
    assert x.numpy().min() >= lo and x.numpy().max() <= hi
    np.testing.assert_allclose(x.numpy(), ref.x, atol=1e-5)


def test_lbfgs_history_persists_across_step_calls():
    """max_iter=1 per call continues one L-BFGS run: the same as a single call with max_iter=k."""
    a, b = spd_quadratic(6, seed=5)
    fn = lambda v: quadratic(v, minigrad.tensor(a), minigrad.tensor(b))
    x1 = minigrad.tensor(np.zeros(6), requires_grad=True)
    opt1 = optim.LBFGS([x1], lr=0.5, max_iter=1)
    c1 = make_closure(opt1, x1, fn)
    for _ in range(8):
        opt1.step(c1)
    x2 = minigrad.tensor(np.zeros(6), requires_grad=True)
    opt2 = optim.LBFGS([x2], lr=0.5, max_iter=8, max_eval=100)
    opt2.step(make_closure(opt2, x2, fn))
    # the single call evaluates after its last update only when it continues; compare after 8 updates
    np.testing.assert_allclose(x1.numpy(), x2.numpy(), rtol=1e-12)


def test_lbfgs_stops_at_once_when_the_gradient_vanishes():
    x = minigrad.tensor(np.ones(3), requires_grad=True)
    opt = optim.LBFGS([x], line_search_fn="strong_wolfe")
    calls = []

    def closure():
        calls.append(1)
        opt.zero_grad()
        loss = ((x - 1.0) ** 2).sum()
        loss.backward()
        return loss

    assert opt.step(closure).item() == 0.0
    assert len(calls) == 1 and np.all(x.numpy() == 1)


def test_lbfgs_several_tensors_are_one_flat_vector():
    a = minigrad.tensor(np.array([3.0, -1.0]), requires_grad=True)
    b = minigrad.tensor(np.array([[2.0], [0.5]]), requires_grad=True)
    opt = optim.LBFGS([a, b], line_search_fn="strong_wolfe", max_iter=50, tolerance_change=1e-15)
    opt.step(make_closure(opt, None, lambda _: ((a - 1.0) ** 2).sum() + ((b + 2.0) ** 2).sum() * 3.0))
    np.testing.assert_allclose(a.numpy(), [1.0, 1.0], atol=1e-8)
    np.testing.assert_allclose(b.numpy(), [[-2.0], [-2.0]], atol=1e-8)


# ----- bad input ------------------------------------------------------------------------------------


def leaf(shape=(3,), requires_grad=True):
    return minigrad.tensor(np.zeros(shape, np.float32), requires_grad=requires_grad)


@pytest.mark.parametrize("make, match", [
    (lambda: optim.SGD([leaf()], lr=-0.1), "lr must be >= 0"),
    (lambda: optim.Adam([leaf()], lr=-1e-3), "lr must be >= 0"),
    (lambda: optim.LBFGS([leaf()], lr=0), "lr must be > 0"),
    (lambda: optim.SGD([leaf()], lr=float("nan")), "lr must be a finite"),
    (lambda: optim.SGD([leaf()], momentum=-0.5), "momentum"),
    (lambda: optim.SGD([leaf()], nesterov=True), "nesterov"),
    (lambda: optim.SGD([leaf()], weight_decay=-1), "weight_decay"),
    (lambda: optim.Adam([leaf()], betas=(0.9, 1.0)), r"betas\[1\]"),
    (lambda: optim.Adam([leaf()], eps=-1), "eps"),
    (lambda: optim.LBFGS([leaf()], history_size=0), "history_size"),
    (lambda: optim.LBFGS([leaf()], max_iter=2.5), "max_iter"),
    (lambda: optim.LBFGS([leaf()], line_search_fn="armijo"), "line_search_fn"),
    (lambda: optim.LBFGS([leaf()], bounds=(1.0, 0.0)), "lo <= hi"),
    (lambda: optim.SGD([], lr=0.1), "empty parameter list"),
    (lambda: optim.Adam(iter([])), "empty parameter list"),
    (lambda: optim.SGD([leaf(requires_grad=False)], lr=0.1), "requires_grad=False"),
])
def test_bad_hyperparameters_and_params_give_clear_errors(make, match):
    with pytest.raises(ValueError, match=match):
        make()


def test_bad_parameter_types_give_clear_errors():
    x = leaf()
    with pytest.raises(TypeError, match="only optimize minigrad Tensors.*ndarray"):
        optim.SGD([np.zeros(3)], lr=0.1)
    with pytest.raises(ValueError, match="more than once"):
        optim.SGD([x, x], lr=0.1)
    with pytest.raises(TypeError, match="unknown hyperparameter"):
        optim.SGD([{"params": [x], "learning_rate": 0.1}])
    with pytest.raises(TypeError, match="iterable of Tensors"):
        optim.SGD(3.0)
    with pytest.raises(TypeError, match="needs a closure"):
        optim.LBFGS([x]).step()
    with pytest.raises(ValueError, match="one parameter group"):
        optim.LBFGS([{"params": [x]}, {"params": [leaf()]}])
    # a single tensor is the common case of optimizing one image: accepted as [tensor]
    assert optim.Adam(x).param_groups[0]["params"] == [x]


def test_lbfgs_reports_a_non_finite_loss():
    x = minigrad.tensor(np.ones(2), requires_grad=True)
    opt = optim.LBFGS([x])

    def closure():
        opt.zero_grad()
        loss = (x * float("nan")).sum()
        loss.backward()
        return loss

    with pytest.raises(FloatingPointError, match="non-finite loss"):
        opt.step(closure)


def test_gradient_of_the_wrong_shape_is_reported():
    x = leaf()
    opt = optim.SGD([x], lr=0.1)
    x.grad = np.zeros(4, np.float32)
    with pytest.raises(ValueError, match=r"gradient of shape \(4,\).*\(3,\)"):
        opt.step()


# ----- GPU ------------------------------------------------------------------------------------------


@pytest.mark.gpu
def test_optimizers_run_on_cupy_arrays():
    cupy = pytest.importorskip("cupy")
    try:
        cupy.cuda.runtime.getDeviceCount()
    except Exception:  # pragma: no cover - depends on the machine
        pytest.skip("no CUDA device")
    a, b = spd_quadratic(10, seed=2)
    exact = np.linalg.solve(a, b)
    fn = lambda v: quadratic(v, minigrad.tensor(a).to("cuda"), minigrad.tensor(b).to("cuda"))
    for make in (lambda p: optim.LBFGS(p, max_iter=100, line_search_fn="strong_wolfe", tolerance_grad=1e-12),
                 lambda p: optim.LBFGS(p, max_iter=100, bounds=(-10.0, 10.0), tolerance_grad=1e-12)):
        x = minigrad.tensor(np.zeros(10)).to("cuda").requires_grad_()
        opt = make([x])
        opt.step(make_closure(opt, x, fn))
        assert x.device == "cuda"
        np.testing.assert_allclose(x.numpy(), exact, atol=1e-6)
    for make in (lambda p: optim.SGD(p, lr=0.05, momentum=0.9, nesterov=True), lambda p: optim.Adam(p, lr=0.05)):
        x = minigrad.tensor(np.zeros(10)).to("cuda").requires_grad_()
        opt = make([x])
        for _ in range(300):
            opt.zero_grad()
            fn(x).backward()
            opt.step()
        assert isinstance(x.data, cupy.ndarray)
        np.testing.assert_allclose(x.numpy(), exact, atol=1e-2)


def test_closures_record_gradients_even_when_step_runs_under_no_grad():
    for make in (lambda p: optim.LBFGS(p, line_search_fn="strong_wolfe"), lambda p: optim.SGD(p, lr=0.1)):
        x = minigrad.tensor(np.ones(3), requires_grad=True)
        opt = make([x])
        closure = make_closure(opt, x, lambda v: ((v - 2.0) ** 2).sum())
        with minigrad.no_grad():
            loss = opt.step(closure)
        assert loss.item() == pytest.approx(3.0) and x.grad is not None
