"""Training for the techniques that fit a network (Deep Image Prior, colorization): a number of
steps with a progress line, stopped cleanly by Ctrl-C so the caller keeps what the finished steps
made; and a linear classifier (softmax regression), the probe that measures what features know."""

import numpy as np

import minigrad
from methods.lib.progress import Progress

__all__ = ["LinearClassifier", "run_steps"]


def run_steps(step, steps, description, verbose=None):
    """Call ``step(i)`` for ``i`` in 0 .. ``steps`` - 1 under a progress line; ``step`` returns a
    dict of numbers to show on it (or None). Ctrl-C (KeyboardInterrupt) ends the loop early: the
    step it interrupted is not counted. Returns the number of steps finished.

    A step should record its results only once it has them all, so that an interrupted step
    leaves no half-written record behind."""
    progress = Progress(range(steps), description, verbose=verbose)
    done = 0
    try:
        for i in progress:
            shown = step(i)
            if shown:
                progress.set(**shown)
            done = i + 1
    except KeyboardInterrupt:
        pass
    return done


class LinearClassifier:
    """Multinomial logistic regression on standardized features, fitted by L-BFGS: the linear
    probe of representation learning (how much of a task a linear map of the features solves).

    ``fit(x, y)``: features (N, D) and labels (N,) in 0 .. ``classes`` - 1; each feature is
    standardized with the training mean and standard deviation, then W (D, K) and b (K,)
    minimize the mean cross-entropy plus ``weight_decay`` / 2 * |W|^2, in float64, with
    minigrad's L-BFGS and a strong-Wolfe line search (``iterations`` at most). ``predict(x)``:
    the class of each row; ``accuracy(x, y)``: the fraction right."""

    def __init__(self, classes, weight_decay=1e-3, iterations=200):
        self.classes, self.weight_decay, self.iterations = classes, weight_decay, iterations

    def _standard(self, x):
        return (np.asarray(x, np.float64) - self.mean) / self.scale

    def fit(self, x, y):
        x = np.asarray(x, np.float64)
        y = np.asarray(y, np.int64)
        if x.ndim != 2 or y.shape != (len(x),) or not len(x):
            raise ValueError(f"fit needs features (N, D) and N labels, got {x.shape} and {y.shape}")
        if y.min() < 0 or y.max() >= self.classes:
            raise ValueError(f"labels must lie in 0..{self.classes - 1}, got {y.min()}..{y.max()}")
        self.mean, self.scale = x.mean(axis=0), x.std(axis=0) + 1e-8
        features = minigrad.tensor(self._standard(x))
        onehot = minigrad.tensor(np.eye(self.classes)[y])
        w = minigrad.tensor(np.zeros((x.shape[1], self.classes)), requires_grad=True)
        b = minigrad.tensor(np.zeros(self.classes), requires_grad=True)
        optimizer = minigrad.optim.LBFGS([w, b], max_iter=self.iterations, line_search_fn="strong_wolfe")

        def closure():
            optimizer.zero_grad()
            logits = minigrad.functional.log_softmax(features @ w + b, axis=1)
            loss = -(logits * onehot).sum() / len(x) + (w * w).sum() * (self.weight_decay / 2)
            loss.backward()
            return loss

        optimizer.step(closure)
        self.weight, self.bias = w.numpy(), b.numpy()
        return self

    def predict(self, x):
        return np.argmax(self._standard(x) @ self.weight + self.bias, axis=1)

    def accuracy(self, x, y):
        return float(np.mean(self.predict(x) == np.asarray(y)))
