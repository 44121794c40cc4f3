"""Train fashion-vgg, the small model that ships in weights/, with minigrad itself.

    python -m training fashion-vgg [--epochs 8] [--batch-size 128] [--seed 0] [--dropout 0.1]
                                   [--data /usr/share/datasets/fashion-mnist]
                                   [--output weights/fashion-vgg.safetensors] [--force | --resume]

Why it is here: the shipped ``fashion-vgg.safetensors`` must be reproducible from the repository
alone, and training it is also the project's end-to-end training benchmark (forward, backward,
optimizer step through minigrad's kernels), so the script reports images per second and time per
epoch and writes them, with the final test accuracy, to a log beside the weights.

The data, the loop, the workers and the checkpoints are every shipped model's: ``training/loop.py``.

Training recipe (the shipped file's defaults): Adam (lr 1e-3), the learning rate annealed to
zero along a half cosine over all steps, 8 epochs of batches of 128, dropout 0.1 after fc6 and
fc7, cross-entropy loss, parameters initialized from ``--seed`` 0, each batch split across
``--workers`` 4 single-threaded processes (synchronous data parallelism); the shipped file was
trained on two cores shared with several other test runs.

Measured here (2 cores, NumPy 2.4, Numba 0.68; images per second over 40 training steps): the
shipped run averaged 348 (172 s per epoch, 23 minutes for 8 epochs) while sharing the cores with
other test runs. On the nearly idle machine: 828 with ``--workers 2`` (about 72 s per epoch),
705 with 4, 539 in one process with one Numba thread, 176 in one process with Numba's default two
threads, 431 in one process on the NumPy reference kernels.

The shipped file and its log were made when this script was ``weights/train.py`` (its
metadata says ``python -m weights.train``); it moved here so that ``weights`` imports NumPy only.
"""

from training.loop import register

__all__ = ["SPEC"]

SPEC = register(
    "fashion-vgg", "minigrad.models.fashion_vgg:FashionVGG", kwargs={"dropout": 0.1},
    defaults={"epochs": 8, "batch_size": 128, "lr": 1e-3, "flip": False, "shift": 0, "workers": 4},
    options={"dropout": (float, "dropout after fc6 and fc7")},
    description="fashion-vgg: the small VGG-style classifier every technique runs on (minigrad/models/fashion_vgg.py)",
)
