"""Scale: dataset scans in bounded memory, and their throughput on 1 and 2 Dask workers.

    python -m benchmarks.scale                                   # VGG16-random pool5, 224 x 224
    python -m benchmarks.scale --images 10000 --memory-only       # the memory row alone
    python -m benchmarks.scale --model fashion-vgg --layer pool3 --throughput-images 2000

Two measurements, each in its own process (its own peak RSS), on a synthetic folder of JPEG
photos-like images (smooth random colour fields of 320 x 240 to 500 x 375, as ImageNet's
validation images are; generated into a temporary folder, never committed):

* **memory**: ``methods.lib.scan`` over ``--images`` images through ``--layer`` (pool5's 25,088
  values per image), the features written to a float32 store; peak resident memory of the
  process (``resource.getrusage``) and its growth over the process after loading the model.
  The store itself is on disk (``--images`` x 100 KB at pool5);
* **throughput** (images/s) of the same scan over ``--throughput-images`` images: in one process
  (the serial path), then on a Dask ``LocalCluster`` of 1 and of 2 worker processes (each
  worker given cores // workers threads), the scaling factor 2 workers / 1 worker, and the peer
  measured in the same run: the bare forward pass of the same batches (no decoding, no store) in
  minigrad and, when installed, torch.

The machine's load (``os.getloadavg``) is printed with every figure: on a shared machine the
2-worker figure is a lower bound.
"""

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time

import numpy as np


def make_folder(folder, count, sizes=((240, 320), (375, 500)), classes=2, seed=0, suffix=".jpg", start=0):
    """Write ``count`` images into ``folder`` (one sub-folder per class): smooth random colour fields
    (an 8 x 8 grid of random colours, bilinearly enlarged, plus a little noise) at a random size
    between the two ``sizes`` (height, width), so they decode and resize like photographs. Images
    ``start`` .. ``start + count - 1`` of the seeded sequence; returns the folder."""
    from PIL import Image

    for c in range(classes):
        os.makedirs(os.path.join(folder, f"class{c}"), exist_ok=True)
    for i in range(start, start + count):
        rng = np.random.default_rng((seed, i))
        h = int(rng.integers(sizes[0][0], sizes[1][0] + 1))
        w = int(rng.integers(sizes[0][1], sizes[1][1] + 1))
        field = Image.fromarray(rng.integers(0, 256, (8, 8, 3), dtype=np.uint8)).resize((w, h), Image.BILINEAR)
        pixels = np.clip(np.asarray(field, np.int16) + rng.integers(-8, 9, (h, w, 3)), 0, 255).astype(np.uint8)
        Image.fromarray(pixels).save(os.path.join(folder, f"class{i % classes}", f"{i:06d}{suffix}"), quality=90)
    return folder
