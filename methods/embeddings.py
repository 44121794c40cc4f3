"""Siamese and metric-learning embeddings: a small network that maps images to 2-D.

The lecture notes' "Dimension reduction using CNN (Siamese and triplet networks)": PCA keeps the
directions of largest pixel variance, which need not be semantic; a network trained so that
Euclidean distance in its output means similarity gives an embedding that is semantic, invariant
to what it was trained to ignore, and applies to new samples.

* the loss (``minigrad.losses``): Hadsell, Chopra & LeCun 2006's contrastive loss on pairs
  (similar = same class, margin m = 1), Schroff et al. 2015's triplet loss with semi-hard negatives
  mined in each batch (alpha = 0.2, squared distances), or Song et al. 2016's lifted structure
  loss (alpha = 1);
* the network: two 5 x 5 convolutions with ReLU and 2 x 2 max-pooling, then two fully connected
  layers to the 2 outputs (Hadsell et al.'s MNIST network is of this kind); images larger than
  32 pixels are first averaged down to 28 x 28;
* the notes' experiment (Hadsell et al. sec. 4.2, their Figure 6): embeddings of the test data,
  of the test data translated horizontally by -6, -3, +3 and +6 pixels (the embedding of a
  network trained without translations scatters them), and of the translated test data after
  training with randomly translated images (it becomes invariant);
* the yardstick: the accuracy of a k-nearest-neighbour classifier in the 2-D embedding (its
  reference points: the training images, embedded; its queries: the test images), against PCA's
  2-D projection (fitted on the training images) and t-SNE's (``methods.tsne``, which has no
  mapping for new points, so training and test images are embedded together).

Of each class, the dataset's first ``train_fraction`` of images train the networks (Adam, batches
of ``batch_size``), the rest are the test set (``methods.lib.training.split_by_class``).
"""

import numpy as np

import minigrad
from methods.lib.datasets import as_dataset
from methods.lib.figures import curves, scatter
from methods.lib.images import grid, shrink
from methods.lib.options import Option, technique
from methods.lib.result import Result
from methods.lib.training import optimize, single_threaded_blas, split_by_class, translate
from methods.tsne import tsne
from minigrad import losses, nn

__all__ = ["EmbeddingsResult", "embedding_network", "embeddings", "knn_accuracy", "pca_2d"]

#: The papers' margins: Hadsell's m, FaceNet's alpha, Song et al.'s alpha.
MARGINS = {"contrastive": 1.0, "triplet": 0.2, "lifted": 1.0}
#: Images larger than this (pixels on a side) are averaged down to ``SIDE`` first.
LARGEST, SIDE = 32, 28


def embedding_network(channels, size):
    """conv 5x5 (8) - ReLU - max-pool 2 - conv 5x5 (16) - ReLU - max-pool 2 - fc 64 - ReLU - fc 2,
    for ``channels`` x ``size`` x ``size`` input (padding keeps the side through each convolution)."""
    side = size // 4
    if side < 1:
        raise ValueError(f"embeddings need images of at least 4 x 4 pixels, got {size} x {size}")
    return nn.Sequential(nn.Conv2d(channels, 8, 5, padding=2), nn.ReLU(), nn.MaxPool2d(2),
                         nn.Conv2d(8, 16, 5, padding=2), nn.ReLU(), nn.MaxPool2d(2), nn.Flatten(),
                         nn.Linear(16 * side * side, 64), nn.ReLU(), nn.Linear(64, 2))


def knn_accuracy(reference, reference_labels, queries, query_labels, k):
    """Share of ``queries`` (M, D) whose majority label among their ``k`` nearest ``reference``
    points (N, D) is their own; ties go to the label of the nearest point among the tied."""
    d = ((queries[:, None, :] - reference[None, :, :]) ** 2).sum(-1)
    k = min(k, len(reference))
    nearest = np.argsort(d, axis=1, kind="stable")[:, :k]
    votes = reference_labels[nearest]
    correct = 0
    for row, truth in zip(votes, query_labels):
        counts = np.bincount(row)
        tied = np.flatnonzero(counts == counts.max())
        winner = next(label for label in row if label in tied)  # nearest first
        correct += int(winner == truth)
    return correct / len(query_labels)


def pca_2d(train, *others):
    """The 2-D PCA projection fitted on ``train`` (N, D), applied to it and to each of ``others``
    (the top two eigenvectors of the D x D covariance, float64)."""
    train = np.asarray(train, np.float64)
    mean = train.mean(0)
    centred = train - mean
    with single_threaded_blas():
        _, vectors = np.linalg.eigh(centred.T @ centred)
        axes = vectors[:, ::-1][:, :2]
        return [(np.asarray(a, np.float64) - mean) @ axes for a in (train, *others)]


class EmbeddingsResult(Result):
    """``points`` {name: (M, 2) coordinates} of every embedding made ("test", "translated",
    "translated_trained", one per other loss, "pca", "pca_translated", "tsne"), ``labels`` {name:
    (M,) classes}, ``accuracy`` {name: kNN accuracy}, ``titles`` {name: caption}, ``losses``
    {network: training losses}, ``names`` the class names."""

    technique = "embeddings"

    def __init__(self, points, labels, accuracy, losses, names, titles, **summary):
        super().__init__(**summary)
        self.points, self.labels, self.accuracy, self.losses = points, labels, accuracy, losses
        self.names, self.titles = names, titles

    def _scatter(self, key):
        return scatter(self.points[key], self.labels[key], self.names, size=4.5,
                       title=f"{self.titles[key]}\n{self.summary['neighbours']}-NN accuracy "
                             f"{100 * self.accuracy[key]:.1f}%")

    def figures(self):
        experiment = [k for k in ("test", "translated", "translated_trained") if k in self.points]
        out = {"experiment": grid([self._scatter(k) for k in experiment], columns=len(experiment), pad=4)}
        others = [k for k in self.points if k not in experiment]
        if others:
            out["comparison"] = grid([self._scatter(k) for k in others], columns=min(3, len(others)), pad=4)
        out["losses"] = curves(self.losses, title="training loss per step", log=False)
        return out


def _train(loss, x, y, shifts, steps, batch_size, lr, margin, seed, description):
    """A fresh network trained with ``loss`` on images ``x`` (labels ``y``), each image of a batch
    translated horizontally by one of ``shifts`` (0 included) when ``shifts`` is not empty."""
    minigrad.manual_seed(seed)
    rng = np.random.default_rng(seed)
    net = embedding_network(x.shape[1], x.shape[2])
    choices = np.array([0, *shifts])
    classes = [np.flatnonzero(y == c) for c in range(int(y.max()) + 1)]

    def batch(index):
        images = x[index]
        if len(shifts):
            images = translate(images.transpose(0, 2, 3, 1), 0, rng.choice(choices, len(index))).transpose(0, 3, 1, 2)
        return net(minigrad.tensor(np.ascontiguousarray(images)))

    def pairs_loss(step):
        first = rng.integers(0, len(x), batch_size)
        dissimilar = rng.random(batch_size) < 0.5
        second = np.array([rng.choice(classes[y[i]]) if not d else rng.choice(np.flatnonzero(y != y[i]))
                           for i, d in zip(first, dissimilar)])
        out = batch(np.concatenate([first, second]))
        return losses.contrastive_loss(out[:batch_size], out[batch_size:], dissimilar, margin)

    def batch_loss(step):
        present = [c for c in classes if len(c) >= 2]
        chosen = rng.choice(len(present), min(len(present), max(2, batch_size // 4)), replace=False)
        index = np.concatenate([rng.choice(present[c], min(4, len(present[c])), replace=False) for c in chosen])
        out = batch(index)
        if loss == "triplet":
            return losses.batch_triplet_loss(out, y[index], margin)
        return losses.lifted_structure_loss(out, y[index], margin)

    training = optimize(pairs_loss if loss == "contrastive" else batch_loss, list(net.parameters()), steps, lr,
                        description)
    return net.eval(), training


def _embed(net, x):
    with minigrad.no_grad(), single_threaded_blas():
        return np.concatenate([net(minigrad.tensor(x[s:s + 512])).numpy() for s in range(0, len(x), 512)])


@technique("embeddings", "Siamese and metric-learning embeddings in 2-D",
           "Hadsell et al. 2006; Schroff et al. 2015; Song et al. 2016", [
    Option("loss", "choice", "contrastive", "loss of the main networks", choices=tuple(MARGINS)),
    Option("margin", "float", None, "the loss's margin (default: the paper's: contrastive 1, triplet 0.2, "
                                    "lifted 1)", low=0),
    Option("compare", "bool", True, "also train one network with each of the other losses", gallery=False),
    Option("steps", "int", 1500, "Adam steps per network", low=1, gallery=20),
    Option("batch_size", "int", 64, "pairs (contrastive) or images (triplet, lifted: 4 per class) per step", low=2,
           gallery=32),
    Option("lr", "float", 0.001, "Adam's learning rate (annealed along a half cosine)", low=0, open_low=True),
    Option("shifts", "ints", [-6, -3, 3, 6], "horizontal translations (pixels) of the notes' experiment",
           low=-64, high=64),
    Option("neighbours", "int", 5, "k of the k-nearest-neighbour accuracy", low=1),
    Option("tsne_iterations", "int", 1000, "t-SNE iterations (0: no t-SNE)", low=0, gallery=0),
    Option("train_fraction", "float", 0.8, "of each class, the first images (this share) train, the rest test",
           low=0, high=1, open_low=True),
    Option("seed", "int", 0, "seed of the networks' weights and their batches", low=0),
], inputs="dataset")
def embeddings(model, dataset, *, loss, margin, compare, steps, batch_size, lr, shifts, neighbours, tsne_iterations,
               train_fraction, seed):
    """Networks trained to embed ``dataset`` (labelled) in 2-D, the notes' translation experiment,
    and kNN accuracies against PCA and t-SNE, as an :class:`EmbeddingsResult` (``model`` only
    sizes the dataset's images)."""
    dataset = as_dataset(model, dataset)
    if dataset.labels is None:
        raise ValueError("embeddings need a labelled dataset (a folder with one sub-folder per class)")
    x, y = shrink(dataset.images, LARGEST, SIDE).transpose(0, 3, 1, 2), dataset.labels
    if len(np.unique(y)) < 2:
        raise ValueError("embeddings need images of at least two classes")
    train_index, test_index = split_by_class(y, train_fraction)
    x_train, y_train, x_test, y_test = x[train_index], y[train_index], x[test_index], y[test_index]
    n_train = len(train_index)
    shifted = np.concatenate([translate(x_test.transpose(0, 2, 3, 1), 0, s).transpose(0, 3, 1, 2)
                              for s in shifts]) if shifts else x_test
    y_shifted = np.tile(y_test, max(len(shifts), 1))
    margins = {name: MARGINS[name] if margin is None else margin for name in MARGINS}

    plain, first = _train(loss, x_train, y_train, [], steps, batch_size, lr, margins[loss], seed, f"{loss} network")
    nets, trainings = {"plain": (plain, first)}, {loss: first}
    if not first.interrupted and shifts:
        nets["translated"] = _train(loss, x_train, y_train, shifts, steps, batch_size, lr, margins[loss], seed,
                                    f"{loss} network, translated images")
        trainings[f"{loss}, with translations"] = nets["translated"][1]
    others = [name for name in MARGINS if name != loss] if compare else []
    for name in others:
        if any(t.interrupted for t in trainings.values()):
            break
        nets[name] = _train(name, x_train, y_train, [], steps, batch_size, lr, margins[name], seed, f"{name} network")
        trainings[name] = nets[name][1]

    points, labels, accuracy, titles = {}, {}, {}, {}

    def add(key, reference, queries, query_labels, title):
        points[key], labels[key], titles[key] = queries, query_labels, title
        accuracy[key] = knn_accuracy(reference, y_train, queries, query_labels, neighbours)

    reference = _embed(plain, x_train)
    add("test", reference, _embed(plain, x_test), y_test, f"{loss}: test images")
    if shifts:
        add("translated", reference, _embed(plain, shifted), y_shifted, f"{loss}: test images translated by {shifts}")
    if "translated" in nets:
        net = nets["translated"][0]
        add("translated_trained", _embed(net, x_train), _embed(net, shifted), y_shifted,
            f"{loss}, trained with translations: translated test images")
    for name in others:
        if name in nets:
            add(name, _embed(nets[name][0], x_train), _embed(nets[name][0], x_test), y_test, f"{name}: test images")
    flat_train, flat_test = x_train.reshape(n_train, -1), x_test.reshape(len(x_test), -1)
    pca_train, pca_test, pca_shifted = pca_2d(flat_train, flat_test, shifted.reshape(len(shifted), -1))
    add("pca", pca_train, pca_test, y_test, "PCA of the pixels: test images")
    if shifts:
        add("pca_translated", pca_train, pca_shifted, y_shifted, "PCA of the pixels: translated test images")
    if tsne_iterations:
        both = np.concatenate([flat_train, flat_test])
        perplexity = min(30.0, (len(both) - 1) / 3)
        embedded = tsne(both, perplexity=perplexity, n_iter=tsne_iterations,
                        early_exaggeration_iter=min(250, tsne_iterations)).coordinates
        add("tsne", embedded[:n_train], embedded[n_train:], y_test, "t-SNE of the pixels (all images at once): test images")
    names = list(dataset.names) if dataset.names else [str(c) for c in range(int(y.max()) + 1)]
    result = EmbeddingsResult(points, labels, accuracy, {k: t.losses for k, t in trainings.items()}, names, titles,
                              knn_accuracy=accuracy, neighbours=neighbours, train_images=n_train,
                              test_images=len(x_test), margins={k: margins[k] for k in trainings if k in margins},
                              trainings={k: t.summary() for k, t in trainings.items()},
                              interrupted=any(t.interrupted for t in trainings.values()))
    result.params["margin"] = margins[loss]
    return result
