"""methods.lib.training: the step loop stops cleanly on Ctrl-C and counts only finished steps; the
linear probe's classifier finds scikit-learn's multinomial logistic regression (same penalty) and
refuses labels it cannot hold."""

import numpy as np
import pytest

from methods.lib.training import LinearClassifier, run_steps


def test_run_steps_counts_finished_steps_and_stops_on_ctrl_c():
    seen = []

    def step(i):
        if i == 4:
            raise KeyboardInterrupt
        seen.append(i)
        return {"loss": 1.0 / (i + 1)}

    assert run_steps(step, 10, "test") == 4 and seen == [0, 1, 2, 3]
    assert run_steps(lambda i: None, 3, "test") == 3


def blobs(n, classes=4, dim=6, seed=0):
    rng = np.random.default_rng(seed)
    centres = rng.normal(0, 1.5, (classes, dim))
    labels = rng.integers(0, classes, n)
    return centres[labels] * rng.uniform(0.5, 20, dim) + rng.normal(size=(n, dim)), labels


def test_linear_classifier_agrees_with_scikit_learn():
    """Same objective (mean cross-entropy + decay / 2 |W|^2 on standardized features is
    scikit-learn's C = 1 / (decay N)): the same weights to 1e-3 and the same predictions."""
    linear_model = pytest.importorskip("sklearn.linear_model")
    x, y = blobs(400)
    ours = LinearClassifier(4, weight_decay=1e-2).fit(x[:300], y[:300])
    theirs = linear_model.LogisticRegression(C=1 / (1e-2 * 300), tol=1e-10, max_iter=10_000)
    theirs.fit((x[:300] - ours.mean) / ours.scale, y[:300])
    np.testing.assert_allclose(ours.weight, theirs.coef_.T, atol=1e-3)
    np.testing.assert_allclose(ours.bias - ours.bias.mean(), theirs.intercept_ - theirs.intercept_.mean(), atol=1e-3)
    assert (ours.predict(x[300:]) == theirs.predict((x[300:] - ours.mean) / ours.scale)).all()
    assert ours.accuracy(x[300:], y[300:]) > 0.8


def test_linear_classifier_errors():
    x, y = blobs(20)
    with pytest.raises(ValueError, match=r"labels must lie in 0..2, got 0..3"):
        LinearClassifier(3).fit(x, y)
    with pytest.raises(ValueError, match=r"fit needs features \(N, D\) and N labels"):
        LinearClassifier(4).fit(x[0], y)
