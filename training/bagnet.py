"""Train the fashion-bagnet models (BagNets with patch sizes 5, 9, 13) with minigrad itself.

    python -m training fashion-bagnet-q13      # and fashion-bagnet-q9, fashion-bagnet-q5
                       [--epochs E] [--workers 2] [--resume] [--force] [--sample]

The networks are in ``minigrad/models/bagnet.py`` (Brendel & Bethge 2019 at 28 x 28); the data,
the loop, the workers and the checkpoints are every shipped model's (``training/loop.py``).
The recipe is fashion-vgg's (Adam, cosine-annealed learning rate, batches of 128,
cross-entropy), with a larger learning rate (2e-3: there is no dropout and the networks are
shallow). The logs beside the weights hold what each run measured.

The shipped runs (the defaults; two worker processes on the idle 2-core machine, about 2,000
images/s): Q = 13, 12 epochs, 6 minutes, 90.14% on the 10,000 test images; Q = 9, 10 epochs, 5
minutes, 86.82%; Q = 5, 8 epochs, 3 minutes, 82.54%; fashion-vgg has 92.21%. A first run
of 4, 3 and 2 epochs on the same machine under a load average of 13 to 19 from other jobs (147
images/s, 56 minutes in all) reached 85.90%, 81.48% and 75.39%, each network's training accuracy
at its test accuracy: they underfit, and the longer schedule is what raised them. Tried before
(Q = 13, one process, the full data): this design with the learning rate annealed over two
epochs, 82.2%; strided designs with 4 x 4 evidence grids and 256-channel 1 x 1 layers (5x5/2,
3x3/2, 2x2 and 5x5/2, 5x5/2), 81.4% and 81.0% after one epoch, no better per epoch; batch
normalization after every convolution learnt faster per step, but made a step about 1.8 times as
costly; 3 x 3 stride-1 first layers (measured for speed only) 1.4 times as costly per image.
"""

from minigrad.models.bagnet import PATCH_SIZES, WIDTHS, model_name
from training.loop import register

__all__ = ["SPECS"]

#: Epochs per patch size (the largest network is the one held to 88% on the test set).
EPOCHS = {5: 8, 9: 10, 13: 12}

SPECS = [
    register(model_name(q), "minigrad.models.bagnet:FashionBagNet", kwargs={"q": q, "widths": WIDTHS},
             defaults={"epochs": EPOCHS[q], "batch_size": 128, "lr": 2e-3, "flip": False, "shift": 0, "workers": 2},
             description=f"{model_name(q)}: a BagNet whose units see {q}x{q} patches (minigrad/models/bagnet.py)")
    for q in PATCH_SIZES
]
