"""GrabCut segmentation with our own max-flow, for saliency-seeded segmentation.

Rother, Kolmogorov & Blake, "GrabCut: Interactive Foreground Extraction using Iterated Graph
Cuts", SIGGRAPH 2004: colour models are Gaussian mixtures (5 full-covariance components for
the foreground, 5 for the background), initialised by k-means; then, iterated, every pixel is
assigned to its most likely component, the mixtures are re-estimated, and a graph cut of the
energy "data term + gamma * contrast-sensitive smoothness" relabels the undecided pixels.
Simonyan, Vedaldi & Zisserman 2014 (sec. 3.1) seed it with the most salient pixels as
foreground and the least salient as background (see ``methods.saliency``).

Labels follow OpenCV's ``cv2.grabCut`` so the two can be compared pixel for pixel:
``BGD = 0`` (sure background), ``FGD = 1`` (sure foreground), ``PR_BGD = 2``, ``PR_FGD = 3``
(undecided, the current guess). The energy's constants are OpenCV's: gamma 50, lambda = 9
gamma for the seeds, beta = 1 / (2 <|z_m - z_n|^2>) over 8-connected neighbours, diagonal
neighbours weighted by 1/sqrt(2), a covariance regularised by 0.01 on the diagonal when
its determinant falls below 1e-6.

The min-cut is Boykov & Kolmogorov's max-flow (``methods._maxflow_numba``, Numba, imported
on first use); :func:`maxflow` exposes it on any graph.
"""

import numpy as np

__all__ = ["BGD", "FGD", "PR_BGD", "PR_FGD", "GMM", "grabcut", "maxflow", "kmeans"]

BGD, FGD, PR_BGD, PR_FGD = 0, 1, 2, 3


def _numba_maxflow():
    try:
        from methods import _maxflow_numba
    except ImportError as error:
        raise ImportError(f"GrabCut's max-flow needs numba: pip install numba ({error})") from error
    return _maxflow_numba.bk_maxflow


# ----------------------------------------------------------------------------- max-flow


class Graph:
    """A directed graph in CSR form with paired arcs (arc ``a`` and its reverse ``sister[a]``)."""

    def __init__(self, num_nodes, tails, heads, capacities, reverse_capacities):
        tails = np.asarray(tails, dtype=np.int64)
        heads = np.asarray(heads, dtype=np.int64)
        e = tails.shape[0]
        if heads.shape != (e,) or np.shape(capacities) != (e,) or np.shape(reverse_capacities) != (e,):
            raise ValueError("tails, heads, capacities and reverse_capacities must be 1-D arrays of one length")
        if e and (min(tails.min(), heads.min()) < 0 or max(tails.max(), heads.max()) >= num_nodes):
            raise ValueError(f"edge endpoints must lie in 0..{num_nodes - 1}")
        arc_tail = np.concatenate([tails, heads])
        arc_head = np.concatenate([heads, tails])
        arc_sister = np.concatenate([np.arange(e, 2 * e), np.arange(e)])
        order = np.argsort(arc_tail, kind="stable")
        inverse = np.empty_like(order)
        inverse[order] = np.arange(order.shape[0])
        self.num_nodes = int(num_nodes)
        self.order = order
        self.head = arc_head[order]
        self.sister = inverse[arc_sister[order]]
        self.first = np.concatenate([[0], np.cumsum(np.bincount(arc_tail, minlength=num_nodes))]).astype(np.int64)
        self.set_capacities(capacities, reverse_capacities)

    def set_capacities(self, capacities, reverse_capacities):
        caps = np.concatenate([np.asarray(capacities, np.float64), np.asarray(reverse_capacities, np.float64)])
        if caps.size and (not np.isfinite(caps).all() or caps.min() < 0):
            raise ValueError("edge capacities must be finite and non-negative")
        self.capacity = caps[self.order]

    def maxflow(self, source_capacities, sink_capacities):
        """(max-flow value, in_source): in_source[i] is True for nodes on the source side of a min cut."""
        cs = np.asarray(source_capacities, np.float64)
        ct = np.asarray(sink_capacities, np.float64)
        if cs.shape != (self.num_nodes,) or ct.shape != (self.num_nodes,):
            raise ValueError(f"terminal capacities must have shape ({self.num_nodes},)")
        if not (np.isfinite(cs).all() and np.isfinite(ct).all()) or min(cs.min(initial=0), ct.min(initial=0)) < 0:
            raise ValueError("terminal capacities must be finite and non-negative")
        direct = np.minimum(cs, ct)
        flow, in_source = _numba_maxflow()(self.first, self.head, self.sister, self.capacity.copy(), cs - ct)
        return float(flow + direct.sum()), in_source


def maxflow(num_nodes, tails, heads, capacities, reverse_capacities, source_capacities, sink_capacities):
    """Maximum flow from a source to a sink (Boykov & Kolmogorov 2004).

    Edge ``k`` joins ``tails[k] -> heads[k]`` with ``capacities[k]`` and, in reverse,
    ``reverse_capacities[k]``; ``source_capacities[i]`` / ``sink_capacities[i]`` join node i
    to the terminals. Returns ``(flow, in_source)``, ``in_source`` a boolean array marking the
    source side of a minimum cut (the nodes still reachable from the source).
    """
    graph = Graph(num_nodes, tails, heads, capacities, reverse_capacities)
    return graph.maxflow(source_capacities, sink_capacities)


# ----------------------------------------------------------------------------- colour models


def kmeans(samples, k, iterations=10, rng=None):
    """Lloyd's k-means with k-means++ seeding (Arthur & Vassilvitskii 2007); returns labels."""
    rng = np.random.default_rng(0) if rng is None else rng
    n = samples.shape[0]
    k = min(k, n)
    centres = np.empty((k, samples.shape[1]))
    centres[0] = samples[rng.integers(n)]
    closest = ((samples - centres[0]) ** 2).sum(axis=1)
    for c in range(1, k):
        total = closest.sum()
        index = rng.choice(n, p=closest / total) if total > 0 else rng.integers(n)
        centres[c] = samples[index]
        closest = np.minimum(closest, ((samples - centres[c]) ** 2).sum(axis=1))
    labels = np.zeros(n, dtype=np.int64)
    for _ in range(iterations):
        distances = (samples ** 2).sum(1)[:, None] - 2 * samples @ centres.T + (centres ** 2).sum(1)[None]
        labels = distances.argmin(axis=1)
        for c in range(k):
            members = samples[labels == c]
            if len(members):
                centres[c] = members.mean(axis=0)
    return labels


class GMM:
    """A Gaussian mixture with full covariances, OpenCV GrabCut's conventions: the component
    density omits the constant (2 pi)^(-d/2), and a component whose covariance determinant
    is at most 1e-6 gets 0.01 added to its diagonal."""

    def __init__(self, components=5, dims=3):
        self.k = components
        self.weights = np.zeros(components)
        self.means = np.zeros((components, dims))
        self.inverses = np.tile(np.eye(dims), (components, 1, 1))
        self.dets = np.ones(components)

    def learn(self, samples, labels):
        n = samples.shape[0]
        if n == 0:
            raise ValueError("a GrabCut colour model has no pixels: seed both foreground and background")
        dims = samples.shape[1]
        for c in range(self.k):
            members = samples[labels == c]
            if len(members) == 0:
                self.weights[c] = 0
                continue
            self.weights[c] = len(members) / n
            mean = members.mean(axis=0)
            cov = members.T @ members / len(members) - np.outer(mean, mean)
            det = np.linalg.det(cov)
            if det <= 1e-6:
                cov = cov + 0.01 * np.eye(dims)
                det = np.linalg.det(cov)
            self.means[c] = mean
            self.inverses[c] = np.linalg.inv(cov)
            self.dets[c] = det
        return self

    def component_densities(self, samples):
        """(N, K) unweighted component densities (0 for empty components)."""
        out = np.zeros((samples.shape[0], self.k))
        for c in range(self.k):
            if self.weights[c] > 0:
                diff = samples - self.means[c]
                mahalanobis = ((diff @ self.inverses[c]) * diff).sum(axis=1)
                out[:, c] = np.exp(-0.5 * mahalanobis) / np.sqrt(self.dets[c])
        return out

    def __call__(self, samples):
        return self.component_densities(samples) @ self.weights

    def assign(self, samples):
        return self.component_densities(samples).argmax(axis=1)


# ----------------------------------------------------------------------------- GrabCut


def _neighbour_edges(pixels, height, width):
    """8-connected pairs (left, up-left, up, up-right) with GrabCut's contrast weights / gamma."""
    index = np.arange(height * width).reshape(height, width)
    image = pixels.reshape(height, width, -1)
    pairs = []
    for dy, dx, scale in ((0, -1, 1.0), (-1, -1, 1 / np.sqrt(2)), (-1, 0, 1.0), (-1, 1, 1 / np.sqrt(2))):
        ys = slice(max(-dy, 0), height)
        xs = slice(max(-dx, 0), width + min(-dx, 0))
        here = index[ys, xs]
        there = index[ys.start + dy:height + dy, xs.start + dx:xs.stop + dx]
        diff = image[ys, xs] - image[ys.start + dy:height + dy, xs.start + dx:xs.stop + dx]
        pairs.append((here.ravel(), there.ravel(), (diff ** 2).sum(-1).ravel(), scale))
    total = sum(p[2].sum() for p in pairs)
    count = sum(p[2].size for p in pairs)
    beta = 0.0 if total <= np.finfo(float).eps else 1.0 / (2.0 * total / count)
    tails = np.concatenate([p[0] for p in pairs])
    heads = np.concatenate([p[1] for p in pairs])
    weights = np.concatenate([p[3] * np.exp(-beta * p[2]) for p in pairs])
    return tails, heads, weights


def grabcut(image, mask, iterations=5, gamma=50.0, components=5, seed=0, init_from_seeds=False):
    """Segment ``image`` (H, W, C uint8 or float) from a label ``mask`` (H, W) of BGD / FGD /
    PR_BGD / PR_FGD, as ``cv2.grabCut(..., cv2.GC_INIT_WITH_MASK)`` does; returns the new mask.

    ``iterations`` rounds of (assign components, re-estimate both GMMs, min-cut). Pixels
    labelled BGD/FGD keep their label (they are tied to their terminal with lambda = 9 gamma);
    the undecided ones come back as PR_FGD or PR_BGD.

    ``init_from_seeds=True`` fits the first colour models to the sure pixels (FGD, BGD) only,
    as Simonyan et al. 2014 do with their saliency quantiles; the default (False) fits them to
    FGD+PR_FGD and BGD+PR_BGD, as OpenCV does.
    """
    image = np.asarray(image)
    if image.ndim == 2:
        image = image[..., None]
    mask = np.asarray(mask)
    if image.ndim != 3 or mask.shape != image.shape[:2]:
        raise ValueError(f"grabcut needs an (H, W, C) image and an (H, W) mask, got {image.shape} and {mask.shape}")
    if not np.isin(mask, (BGD, FGD, PR_BGD, PR_FGD)).all():
        raise ValueError("the mask may hold only BGD (0), FGD (1), PR_BGD (2) and PR_FGD (3)")
    height, width, dims = image.shape
    pixels = image.reshape(-1, dims).astype(np.float64)
    labels = mask.ravel().copy()
    foreground = (labels == FGD) | (labels == PR_FGD)
    if foreground.all() or not foreground.any():
        raise ValueError("grabcut needs both some (probable) foreground and some (probable) background pixels")
    rng = np.random.default_rng(seed)
    bgd_model, fgd_model = GMM(components, dims), GMM(components, dims)
    fgd_init, bgd_init = (labels == FGD, labels == BGD) if init_from_seeds else (foreground, ~foreground)
    if init_from_seeds and not (fgd_init.any() and bgd_init.any()):
        raise ValueError("init_from_seeds needs some sure foreground (FGD) and sure background (BGD) pixels")
    bgd_model.learn(pixels[bgd_init], kmeans(pixels[bgd_init], components, rng=rng))
    fgd_model.learn(pixels[fgd_init], kmeans(pixels[fgd_init], components, rng=rng))

    tails, heads, weights = _neighbour_edges(pixels, height, width)
    graph = Graph(height * width, tails, heads, gamma * weights, gamma * weights)
    lam = 9.0 * gamma
    undecided = (labels == PR_BGD) | (labels == PR_FGD)
    tiny = np.finfo(np.float64).tiny
    for iteration in range(iterations):
        if iteration or not init_from_seeds:
            foreground = (labels == FGD) | (labels == PR_FGD)
            components_of = np.where(foreground, fgd_model.assign(pixels), bgd_model.assign(pixels))
            bgd_model.learn(pixels[~foreground], components_of[~foreground])
            fgd_model.learn(pixels[foreground], components_of[foreground])
        source = np.where(labels == FGD, lam, 0.0)
        sink = np.where(labels == BGD, lam, 0.0)
        source[undecided] = -np.log(np.maximum(bgd_model(pixels[undecided]), tiny))
        sink[undecided] = -np.log(np.maximum(fgd_model(pixels[undecided]), tiny))
        shift = np.minimum(source, sink)  # only the difference matters to the cut
        source, sink = source - shift, sink - shift
        _, in_source = graph.maxflow(source, sink)
        labels[undecided] = np.where(in_source[undecided], PR_FGD, PR_BGD)
    return labels.reshape(height, width).astype(np.uint8)
