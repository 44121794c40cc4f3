"""Bag of visual words: an orderless image representation from a codebook of local patches.

The lecture notes' "Bag of Features" slides, after Sivic & Zisserman ("Video Google", ICCV 2003)
and Csurka, Dance, Fan, Willamowski & Bray ("Visual categorization with bags of keypoints",
ECCV workshop 2004), in their two steps:

1. build a codebook: extract random patches from the training images and cluster them with
   k-means (``methods.kmeans``: k-means++ seeding and Lloyd's iteration); the k centres are the
   "visual words";
2. encode images: every patch of an image on a dense grid is replaced by its nearest word, and the
   image becomes the histogram of its words (normalized to sum 1), a bag that forgets where each
   patch was.

A linear classifier on the histograms (multinomial logistic regression, trained with minigrad:
Adam on minibatches, the histograms standardized with the training set's mean and deviation)
then names the class -- Csurka et al. used an SVM and naive Bayes; a linear softmax classifier is
the same kind of decision rule. Its test accuracy is reported next to the model's own on the same
held-out images (fashion-vgg's, for the Fashion-MNIST sample): what the bag of raw patches loses
against a CNN. Of each class, the dataset's first ``train_fraction`` of images train the codebook
and the classifier; the rest are the test set (``methods.lib.training.split_by_class``).
"""

import numpy as np

import minigrad
from methods.kmeans import kmeans
from methods.lib.datasets import as_dataset
from methods.lib.figures import Panel, figure
from methods.lib.images import grid, rgb, shrink, to_uint8
from methods.lib.options import Option, technique
from methods.lib.result import Result
from methods.lib.training import batch_schedule, optimize, split_by_class
from minigrad import functional as F

__all__ = ["BagOfWordsResult", "bag_of_words", "dense_patches", "histograms"]

#: Images larger than this (pixels on a side) are averaged down to it first: raw-pixel words of
#: a 224 x 224 photograph would be 56 x 56 x 3 = 9,408 numbers long.
LARGEST = 64


def dense_patches(images, size, stride):
    """Every ``size`` x ``size`` patch of float ``images`` (N, H, W, C) on a grid of step
    ``stride``: (N, positions, size * size * C) and the grid's (rows, columns)."""
    windows = np.lib.stride_tricks.sliding_window_view(images, (size, size), axis=(1, 2))[:, ::stride, ::stride]
    n, rows, cols = windows.shape[:3]
    # windows: (N, rows, cols, C, size, size) -> patches laid out as (size, size, C)
    patches = windows.transpose(0, 1, 2, 4, 5, 3).reshape(n, rows * cols, -1)
    return np.ascontiguousarray(patches), (rows, cols)


def histograms(codebook, images, size, stride, numbers=1 << 22):
    """The word histogram (sum 1) of each image: (N, k) float32, and the words themselves
    (N, positions) int64; images go in batches of about ``numbers`` patch values (bounded memory)."""
    k = len(codebook.centers)
    h, w, c = images.shape[1:]
    per_image = ((h - size) // stride + 1) * ((w - size) // stride + 1) * size * size * c
    batch = max(1, numbers // per_image)
    out, words = [], []
    for start in range(0, len(images), batch):
        patches, _ = dense_patches(images[start:start + batch], size, stride)
        labels = codebook.predict(patches.reshape(-1, patches.shape[-1])).reshape(patches.shape[:2])
        counts = np.stack([np.bincount(row, minlength=k) for row in labels])
        out.append((counts / labels.shape[1]).astype(np.float32))
        words.append(labels)
    return np.concatenate(out), np.concatenate(words)


class BagOfWordsResult(Result):
    """``centers`` (k, size, size, C) the visual words as patches, ``frequency`` (k,) how often each
    is used over the training images; ``class_histograms`` (classes, k) the mean histogram of each
    class's training images, ``names`` the classes; ``predictions`` and ``labels`` of the test
    images; ``accuracy`` and ``model_accuracy`` (the model's own on the same test images, None
    when its classes are not the dataset's); ``example`` (image, image rebuilt from its words, its
    histogram) of a test image; ``losses`` the classifier's training losses."""

    technique = "bag-of-words"

    def __init__(self, centers, frequency, names, class_histograms, predictions, labels, example, losses, **summary):
        super().__init__(**summary)
        self.centers, self.frequency, self.names = centers, frequency, names
        self.class_histograms, self.predictions, self.labels = class_histograms, predictions, labels
        self.accuracy, self.model_name = summary["accuracy"], summary["model"]
        self.model_accuracy = summary["model_accuracy"]
        self.example, self.losses = example, losses

    def _words(self, order):
        return [rgb(to_uint8(self.centers[j], 0.0, 1.0)) for j in order]

    def figures(self):
        order = np.argsort(-self.frequency, kind="stable")
        k = len(order)
        shown = order[:min(k, 64)]
        words = self._words(shown)
        tiles = grid([np.kron(w, np.ones((4, 4, 1), np.uint8)) for w in words], columns=min(16, len(words)), pad=2,
                     labels=[f"{100 * self.frequency[j]:.1f}%" for j in shown])
        compared = (f"; {self.model_name}: {100 * self.model_accuracy:.1f}%" if self.model_accuracy is not None else "")
        out = {"codebook": figure([Panel(f"the {len(shown)} most used of {k} visual words (k-means centres),\n"
                                         "each with its share of the training patches", image=tiles)], size="native")}
        image, quantized, hist = self.example
        out["encoding"] = figure([
            Panel("a test image", image=image),
            Panel("the same in visual words (each patch replaced by its word)", image=quantized),
            Panel("its word histogram (words, most used first)", values=hist[order][None, :].repeat(max(1, k // 8), 0),
                  cmap="magma", label="share of the image's patches"),
        ], columns=3, size=3.2)
        out["class_histograms"] = figure([
            Panel(f"mean word histogram per class (test accuracy: bag of words {100 * self.accuracy:.1f}%{compared})",
                  values=self.class_histograms[:, order], cmap="magma", label="share of patches", rows=self.names),
        ], size=7.0)
        return out

    def pictures(self):
        return {"words": grid(self._words(np.argsort(-self.frequency, kind="stable")), pad=1)}


@technique("bag-of-words", "Bag of visual words", "Sivic & Zisserman 2003; Csurka et al. 2004", [
    Option("words", "int", 256, "codebook size k (visual words)", low=2, high=4096, gallery=32),
    Option("patch", "int", None, "patch side in pixels (default: a quarter of the image side, 7 for 28 x 28)", low=1),
    Option("samples", "int", 50_000, "random patches the codebook is clustered from", low=2, gallery=4000),
    Option("stride", "int", None, "step between the patches that encode an image (default: a third of the patch "
                                  "side, 2 for 7 x 7 patches)", low=1),
    Option("train_fraction", "float", 0.8, "of each class, the first images (this share) train, the rest test",
           low=0, high=1, open_low=True),
    Option("steps", "int", 2000, "Adam steps of the linear classifier", low=1, gallery=200),
    Option("lr", "float", 0.01, "Adam's learning rate (annealed along a half cosine)", low=0, open_low=True),
    Option("batch_size", "int", 256, "histograms per classifier step", low=1),
    Option("seed", "int", 0, "seed of the patch sampling, k-means++ and the classifier", low=0),
], inputs="dataset")
def bag_of_words(model, dataset, *, words, patch, samples, stride, train_fraction, steps, lr, batch_size, seed):
    """Codebook, histograms and a linear classifier on ``dataset`` (a labelled Dataset), compared
    with ``model``'s accuracy on the same test images, as a :class:`BagOfWordsResult`."""
    dataset = as_dataset(model, dataset)
    if dataset.labels is None:
        raise ValueError("bag-of-words needs a labelled dataset (a folder with one sub-folder per class)")
    images = shrink(dataset.images, LARGEST, LARGEST)
    h, w, c = images.shape[1:]
    patch = patch or max(1, min(h, w) // 4)
    stride = stride or max(1, patch // 3)
    if patch > min(h, w):
        raise ValueError(f"patch must be at most the image side ({min(h, w)}), got {patch}")
    train_index, test_index = split_by_class(dataset.labels, train_fraction)
    n_train = len(train_index)
    rng = np.random.default_rng(seed)
    train, test = images[train_index], images[test_index]
    y_train, y_test = dataset.labels[train_index], dataset.labels[test_index]

    which = rng.integers(0, n_train, samples)
    tops, lefts = rng.integers(0, h - patch + 1, samples), rng.integers(0, w - patch + 1, samples)
    rows, cols = tops[:, None] + np.arange(patch), lefts[:, None] + np.arange(patch)
    sampled = train[which[:, None, None], rows[:, :, None], cols[:, None, :]].reshape(samples, -1)
    codebook = kmeans(sampled, min(words, samples), seed=seed)

    train_hist, train_words = histograms(codebook, train, patch, stride)
    test_hist, test_words = histograms(codebook, test, patch, stride)
    mean, std = train_hist.mean(0), train_hist.std(0) + 1e-6
    classes = int(dataset.labels.max()) + 1
    minigrad.manual_seed(seed)
    linear = minigrad.nn.Linear(len(codebook.centers), classes)
    features = (train_hist - mean) / std
    batches = batch_schedule(n_train, batch_size, steps, rng)
    training = optimize(lambda step: F.cross_entropy(linear(minigrad.tensor(features[batches[step]])),
                                                     y_train[batches[step]]),
                        list(linear.parameters()), steps, lr, "bag-of-words classifier")
    with minigrad.no_grad():
        predictions = linear(minigrad.tensor((test_hist - mean) / std)).numpy().argmax(1)
    accuracy = float((predictions == y_test).mean())
    model_accuracy = _model_accuracy(model, dataset, test_index)
    frequency = np.bincount(train_words.ravel(), minlength=len(codebook.centers)) / train_words.size
    class_hist = np.stack([train_hist[y_train == k].mean(0) if (y_train == k).any() else np.zeros(train_hist.shape[1])
                           for k in range(classes)])
    example = _example(codebook, test[0], patch, test_hist[0])
    names = list(dataset.names) if dataset.names else [str(k) for k in range(classes)]
    centers = codebook.centers.reshape(-1, patch, patch, c)
    result = BagOfWordsResult(centers, frequency, names, class_hist, predictions, y_test, example, training.losses,
                              accuracy=accuracy, model_accuracy=model_accuracy, model=model.describe(),
                              train_images=n_train, test_images=len(test_index), words=len(codebook.centers),
                              kmeans_inertia=codebook.inertia, kmeans_iterations=codebook.iterations,
                              classifier=training.summary())
    result.params.update(patch=patch, stride=stride)
    return result


def _model_accuracy(model, dataset, test_index):
    """The model's accuracy on the test images, or None when its classes are not the dataset's."""
    if not dataset.names or tuple(model.labels or ()) != tuple(dataset.names):
        return None
    correct = 0
    with minigrad.no_grad():
        for start in range(0, len(test_index), 256):
            chosen = test_index[start:start + 256]
            x = model.preprocessing.normalize(dataset.images[chosen])
            correct += int((model(minigrad.tensor(x)).numpy().argmax(1) == dataset.labels[chosen]).sum())
    return correct / len(test_index)


def _example(codebook, image, patch, histogram):
    """(image, the image rebuilt from the words of its non-overlapping patches, its histogram)."""
    h, w, c = image.shape
    patches, (rows, cols) = dense_patches(image[None], patch, patch)
    words = codebook.predict(patches[0])
    rebuilt = np.zeros((rows * patch, cols * patch, c), np.float32)
    for i, word in enumerate(words):
        r, q = divmod(i, cols)
        rebuilt[r * patch:(r + 1) * patch, q * patch:(q + 1) * patch] = codebook.centers[word].reshape(patch, patch, c)
    shown = np.zeros_like(image)
    shown[:rebuilt.shape[0], :rebuilt.shape[1]] = rebuilt
    return rgb(to_uint8(image, 0.0, 1.0)), rgb(to_uint8(shown, 0.0, 1.0)), histogram
