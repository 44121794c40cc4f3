"""minigrad.losses: the metric-learning losses equal their papers' formulas written out in NumPy,
their gradients pass Hypothesis gradient checks (float64, away from the hinges' kinks and from ties
in the mining), the mining picks the negatives FaceNet describes, and torch agrees on the triplet
loss."""

import numpy as np
import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

import minigrad
from minigrad import gradcheck, losses
from tests.strategies import generator, seeds


def _distances(a, b):
    return np.sqrt(((a - b) ** 2).sum(-1))


def contrastive_reference(x1, x2, y, m):
    d = _distances(x1, x2)
    return np.mean((1 - y) * 0.5 * d ** 2 + y * 0.5 * np.maximum(0, m - d) ** 2)


def lifted_reference(x, labels, alpha):
    """Song et al. eq. 4 with explicit loops."""
    d = _distances(x[:, None], x[None])
    total, pairs = 0.0, 0
    for i in range(len(x)):
        for j in range(i + 1, len(x)):
            if labels[i] != labels[j]:
                continue
            pairs += 1
            s = sum(np.exp(alpha - d[i, k]) for k in range(len(x)) if labels[k] != labels[i])
            s += sum(np.exp(alpha - d[j, l]) for l in range(len(x)) if labels[l] != labels[j])
            total += max(0.0, np.log(s) + d[i, j]) ** 2
    return total / (2 * pairs)


@settings(deadline=None, max_examples=40)
@given(n=st.integers(1, 6), dim=st.integers(1, 4), margin=st.floats(0.5, 2.0), seed=seeds)
def test_contrastive_value_and_gradient(n, dim, margin, seed):
    rng = generator(seed)
    x1, x2 = rng.normal(size=(n, dim)), rng.normal(size=(n, dim))
    y = rng.integers(0, 2, n)
    d = _distances(x1, x2)
    assume((d > 1e-3).all() and (np.abs(margin - d) > 1e-3).all())
    value = losses.contrastive_loss(minigrad.tensor(x1), minigrad.tensor(x2), y, margin).item()
    assert value == pytest.approx(contrastive_reference(x1, x2, y, margin), rel=1e-10, abs=1e-12)
    gradcheck(lambda a, b: losses.contrastive_loss(a, b, y, margin), [x1, x2])


@settings(deadline=None, max_examples=40)
@given(n=st.integers(1, 5), dim=st.integers(1, 4), margin=st.floats(0.0, 1.0), squared=st.booleans(), seed=seeds)
def test_triplet_value_and_gradient(n, dim, margin, squared, seed):
    rng = generator(seed)
    a, p, q = (rng.normal(size=(n, dim)) for _ in range(3))
    dp, dn = _distances(a, p), _distances(a, q)
    if squared:
        dp, dn = dp ** 2, dn ** 2
    assume((np.abs(dp - dn + margin) > 1e-3).all() and (_distances(a, p) > 1e-3).all()
           and (_distances(a, q) > 1e-3).all())
    value = losses.triplet_loss(minigrad.tensor(a), minigrad.tensor(p), minigrad.tensor(q), margin, squared).item()
    assert value == pytest.approx(np.maximum(0, dp - dn + margin).mean(), rel=1e-10, abs=1e-12)
    gradcheck(lambda x, y, z: losses.triplet_loss(x, y, z, margin, squared), [a, p, q])


def _gaps_are_wide(x, labels, squared):
    """No two distances from one anchor within 1e-3 of each other (mining stays the same under
    finite differences), and no triplet's hinge within 1e-3 of its kink."""
    d = _distances(x[:, None], x[None]) ** (2 if squared else 1)
    for row in d:
        values = np.sort(row)
        if (np.diff(values[1:]) < 1e-3).any():
            return False
    return True


@settings(deadline=None, max_examples=30)
@given(n=st.integers(3, 8), dim=st.integers(1, 3), mining=st.sampled_from(["semi-hard", "hard"]),
       squared=st.booleans(), seed=seeds)
def test_batch_triplet_gradient(n, dim, mining, squared, seed):
    rng = generator(seed)
    x = rng.normal(size=(n, dim))
    labels = rng.integers(0, 3, n)
    assume(len(np.unique(labels)) >= 2 and _gaps_are_wide(x, labels, squared))
    d = _distances(x[:, None], x[None]) ** (2 if squared else 1)
    a, p, q = losses.mine_triplets(d, labels, mining)
    assume(len(a) and (np.abs(d[a, p] - d[a, q] + 0.2) > 1e-3).all())
    gradcheck(lambda t: losses.batch_triplet_loss(t, labels, 0.2, mining, squared), [x])


def test_mining_picks_facenets_negatives():
    #          anchor 0 and positive 1 at distance 2; negatives at 1 (hard), 3 (semi-hard), 5
    x = np.array([[0.0], [2.0], [1.0], [3.0], [-5.0]])
    labels = np.array([0, 0, 1, 1, 2])
    d = _distances(x[:, None], x[None])
    a, p, n = losses.mine_triplets(d, labels, "semi-hard")
    chosen = {(int(i), int(j)): int(k) for i, j, k in zip(a, p, n)}
    assert chosen[(0, 1)] == 3  # the closest negative farther than the positive (3 > 2)
    assert chosen[(1, 0)] == 4  # from 1: negatives at 1, 1, 7; none farther than 2 but 4 (7)
    a, p, n = losses.mine_triplets(d, labels, "hard")
    assert {(int(i), int(j)): int(k) for i, j, k in zip(a, p, n)}[(0, 1)] == 2
    assert set(zip(a.tolist(), p.tolist())) == {(0, 1), (1, 0), (2, 3), (3, 2)}


@settings(deadline=None, max_examples=30)
@given(n=st.integers(2, 7), dim=st.integers(1, 3), alpha=st.floats(0.2, 1.5), seed=seeds)
def test_lifted_structure_value_and_gradient(n, dim, alpha, seed):
    rng = generator(seed)
    x = rng.normal(size=(n, dim))
    labels = rng.integers(0, 2, n)
    same = labels[:, None] == labels[None]
    assume(np.triu(same, 1).any() and not same.all())
    assume((_distances(x[:, None], x[None])[~np.eye(n, dtype=bool)] > 1e-3).all())
    d = _distances(x[:, None], x[None])
    spread = (np.exp(alpha - d) * ~same).sum(1)
    i, j = np.nonzero(np.triu(same, 1))
    assume((np.abs(np.log(spread[i] + spread[j]) + d[i, j]) > 1e-3).all())
    value = losses.lifted_structure_loss(minigrad.tensor(x), labels, alpha).item()
    assert value == pytest.approx(lifted_reference(x, labels, alpha), rel=1e-9)
    gradcheck(lambda t: losses.lifted_structure_loss(t, labels, alpha), [x])


@settings(deadline=None, max_examples=20)
@given(n=st.integers(1, 6), dim=st.integers(1, 4), seed=seeds)
def test_pairwise_distances(n, dim, seed):
    x = generator(seed).normal(size=(n, dim))
    d = losses.pairwise_distances(minigrad.tensor(x)).numpy()
    np.testing.assert_allclose(d, np.sqrt(_distances(x[:, None], x[None]) ** 2 + losses.EPS), rtol=1e-12)
    gradcheck(lambda t: losses.pairwise_distances(t, squared=True), [x])


def test_triplet_loss_equals_torch():
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(0)
    a, p, n = (rng.normal(size=(16, 3)) for _ in range(3))
    ours = losses.triplet_loss(minigrad.tensor(a), minigrad.tensor(p), minigrad.tensor(n), margin=0.7,
                               squared=False).item()
    theirs = torch.nn.functional.triplet_margin_loss(*(torch.tensor(v) for v in (a, p, n)), margin=0.7, eps=0.0)
    assert ours == pytest.approx(float(theirs), rel=1e-9)


def test_degenerate_batches_give_zero_with_a_gradient():
    x = minigrad.tensor(np.random.default_rng(0).normal(size=(4, 2)), requires_grad=True)
    for value in (losses.batch_triplet_loss(x, [0, 1, 2, 3]), losses.lifted_structure_loss(x, [0, 0, 0, 0]),
                  losses.lifted_structure_loss(x, [0, 1, 2, 3])):
        assert value.item() == 0.0
        value.backward()
        np.testing.assert_array_equal(x.grad, 0.0)
        x.grad = None


def test_bad_arguments_are_named():
    x = minigrad.tensor(np.zeros((3, 2)))
    with pytest.raises(ValueError, match="x1 and x2 must have the same shape"):
        losses.contrastive_loss(x, minigrad.tensor(np.zeros((2, 2))), [0, 1])
    with pytest.raises(ValueError, match="dissimilar must hold 0"):
        losses.contrastive_loss(x, x, [0, 2, 1])
    with pytest.raises(ValueError, match="labels must have shape \\(3,\\)"):
        losses.lifted_structure_loss(x, [0, 1])
    with pytest.raises(ValueError, match="margin must be a finite number >= 0"):
        losses.triplet_loss(x, x, x, margin=-1)
    with pytest.raises(ValueError, match="must be a non-empty \\(N, D\\) batch"):
        losses.batch_triplet_loss(minigrad.tensor(np.zeros(3)), [0, 1, 2])
    with pytest.raises(ValueError, match="mining must be 'semi-hard' or 'hard'"):
        losses.batch_triplet_loss(x, [0, 0, 1], mining="easy")
