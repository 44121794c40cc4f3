"""Train the fashion-bagnet models (BagNets with patch sizes 5, 9, 13) with minigrad itself.

    python -m training fashion-bagnet-q13      # and fashion-bagnet-q9, fashion-bagnet-q5
                       [--epochs E] [--workers 2] [--resume] [--force] [--sample]

The networks are in ``minigrad/models/bagnet.py`` (Brendel & Bethge 2019 at 28 x 28); the data,
the loop, the workers and the checkpoints are every shipped model's (``training/loop.py``).
The recipe is fashion-vgg's (Adam, cosine-annealed learning rate, batches of 128,
cross-entropy), with a larger learning rate (2e-3: there is no dropout and the networks are
shallow) and few epochs, because the three together had to train in well under an hour on two
CPU cores shared with other jobs. The logs beside the weights hold what each run measured.
"""

from minigrad.models.bagnet import PATCH_SIZES, WIDTHS, model_name
from training.loop import register

__all__ = ["SPECS"]

#: Epochs per patch size: the largest network is the slowest and the one held to 88%.
EPOCHS = {5: 2, 9: 3, 13: 4}

SPECS = [
    register(model_name(q), "minigrad.models.bagnet:FashionBagNet", kwargs={"q": q, "widths": WIDTHS},
             defaults={"epochs": EPOCHS[q], "batch_size": 128, "lr": 2e-3, "flip": False, "shift": 0, "workers": 2},
             description=f"{model_name(q)}: a BagNet whose units see {q}x{q} patches (minigrad/models/bagnet.py)")
    for q in PATCH_SIZES
]
