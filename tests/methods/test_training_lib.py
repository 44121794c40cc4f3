"""methods.lib.training, what every learning technique and training script shares: minibatches,
translations, and the optimization loop with Ctrl-C; and the two kinds of technique the learning
techniques brought (one that declares its own model, one that takes none)."""

import numpy as np
import pytest

import minigrad
from methods.lib.options import TECHNIQUES
from methods.lib.training import augment, batch_schedule, minibatches, optimize, split_by_class, translate


def test_translate_moves_content_and_fills_zeros():
    image = np.zeros((1, 5, 6), np.uint8)
    image[0, 2, 3] = 9
    moved = translate(image, 1, -2)
    assert moved[0, 3, 1] == 9 and moved.sum() == 9 and moved.dtype == np.uint8
    assert translate(image, 0, 5).sum() == 0  # out of the frame
    colour = np.arange(2 * 4 * 4 * 3).reshape(2, 4, 4, 3)
    shifted = translate(colour, 0, [1, -1])
    np.testing.assert_array_equal(shifted[0, :, 1:], colour[0, :, :-1])
    np.testing.assert_array_equal(shifted[0, :, 0], 0)
    np.testing.assert_array_equal(shifted[1, :, :-1], colour[1, :, 1:])
    with pytest.raises(ValueError, match="translate takes images"):
        translate(np.zeros(4), 1, 1)


def test_augment_shifts_within_range():
    rng = np.random.default_rng(0)
    images = np.zeros((50, 9, 9), np.uint8)
    images[:, 4, 4] = 1
    out = augment(images, rng, flip=False, shift=2)
    rows, cols = np.nonzero(out.reshape(50, 9, 9).sum(0))
    assert rows.min() >= 2 and rows.max() <= 6 and cols.min() >= 2 and cols.max() <= 6
    assert (out.reshape(50, -1).sum(1) == 1).all()


def test_minibatches_and_schedules():
    rng = np.random.default_rng(0)
    batches = list(minibatches(10, 3, rng))
    assert [len(b) for b in batches] == [3, 3, 3] and len(set(np.concatenate(batches))) == 9
    assert sorted(np.concatenate(list(minibatches(10, 3, rng, drop_last=False)))) == list(range(10))
    schedule = batch_schedule(5, 2, 7, rng)
    assert len(schedule) == 7 and all(len(b) == 2 for b in schedule)
    assert all(len(b) == 3 for b in batch_schedule(3, 8, 2, rng))  # a set smaller than a batch
    with pytest.raises(ValueError, match="batch_size must be at least 1"):
        list(minibatches(4, 0, rng))


def test_split_by_class_keeps_every_class_on_both_sides():
    labels = np.repeat([0, 1, 2], 10)  # sorted by class, as the photo crops are
    train, test = split_by_class(labels, 0.8)
    assert np.bincount(labels[train]).tolist() == [8, 8, 8] and np.bincount(labels[test]).tolist() == [2, 2, 2]
    assert train.tolist() == sorted(train.tolist()) and not set(train) & set(test)
    official = np.concatenate([np.repeat(np.arange(10), 60), np.repeat(np.arange(10), 10)])  # 600 + 100 images
    train, test = split_by_class(official, 6 / 7)
    assert train.tolist() == list(range(600)) and test.tolist() == list(range(600, 700))
    assert split_by_class([0, 1, 1], 0.5)[1].tolist() == [2]  # a class of one image trains
    with pytest.raises(ValueError, match="leaves no test images"):
        split_by_class([0, 1, 2], 0.5)
    with pytest.raises(ValueError, match="strictly between 0 and 1"):
        split_by_class([0, 1], 1.0)


def test_optimize_fits_and_keeps_what_it_has_on_ctrl_c():
    w = minigrad.tensor(np.zeros(3), requires_grad=True)
    target = np.array([1.0, -2.0, 3.0])
    done = optimize(lambda step: ((w - target) ** 2).sum(), [w], 300, 0.1, "fit", verbose=False)
    assert not done.interrupted and done.steps == 300 and done.losses[-1] < 1e-6
    np.testing.assert_allclose(w.numpy(), target, atol=1e-3)

    v = minigrad.tensor(np.zeros(3), requires_grad=True)

    def loss(step):
        if step == 4:
            raise KeyboardInterrupt
        return ((v - target) ** 2).sum()

    stopped = optimize(loss, [v], 100, 0.1, "fit", verbose=False)
    assert stopped.interrupted and stopped.steps == 4 and stopped.summary()["steps"] == 4
    assert 0 < np.abs(v.numpy()).max() < 1  # four Adam steps of 0.1
    with pytest.raises(FloatingPointError, match="the loss became nan at step 0"):
        optimize(lambda step: (v * np.nan).sum(), [v], 3, 0.1, "fit", verbose=False)


def test_technique_kinds_of_the_learning_techniques():
    bagnet, ua = TECHNIQUES["bagnet-evidence"], TECHNIQUES["universal-approximation"]
    assert bagnet.model == "fashion-bagnet" and bagnet.inputs == "images"
    assert ua.inputs == "none" and ua.model is None
    from methods.__main__ import build_parser

    parser = build_parser()
    assert parser.parse_args(["bagnet-evidence"]).model == "fashion-bagnet"
    assert not hasattr(parser.parse_args(["universal-approximation"]), "model")
