"""Data shipped with minigrad so every technique runs offline on a fresh machine.

Two kinds of data live here, both under free licences recorded in ``LICENSES.md`` beside this
file:

* natural sample images copied byte for byte from scikit-image's ``skimage/data`` folder
  (public domain or CC0), read by name with :func:`sample_image` -- photographs for saliency,
  deconvnet, inversion, DeepDream and style transfer, and three grayscale textures for texture
  synthesis. scikit-image is not needed; Pillow decodes the files and is imported only here.
* a held-out, class-balanced sample of 2,000 Fashion-MNIST *test* images with labels
  (:func:`fashion_sample`), for the techniques that need a dataset -- maximally activating
  patches, nearest neighbours, t-SNE -- and for checking the shipped ``fashion-vgg`` model.
  It is drawn from the test split, so the model never saw these images in training.
"""

import os

import numpy as np

__all__ = ["DATA_DIR", "SAMPLE_IMAGES", "FASHION_CLASSES", "sample_image", "fashion_sample"]

#: The folder holding the shipped files.
DATA_DIR = os.path.dirname(os.path.abspath(__file__))

#: name -> (file name, what it shows). Every file is unmodified from scikit-image 0.26's data folder.
SAMPLE_IMAGES = {
    "astronaut": ("astronaut.png", "astronaut Eileen Collins, 512x512 RGB"),
    "brick": ("brick.png", "brick wall texture, 512x512 grayscale"),
    "chelsea": ("chelsea.png", "Chelsea the cat, 300x451 RGB"),
    "coffee": ("coffee.png", "coffee cup, 400x600 RGB"),
    "grass": ("grass.png", "grass texture, 512x512 grayscale"),
    "gravel": ("gravel.png", "gravel texture, 512x512 grayscale"),
    "rocket": ("rocket.jpg", "Falcon 9 launch carrying DSCOVR, 427x640 RGB"),
}

#: The ten Fashion-MNIST classes, in label order (Xiao, Rasul & Vollgraf 2017).
FASHION_CLASSES = (
    "T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
    "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot",
)

_FASHION_FILE = "fashion_mnist_sample.npz"


def sample_image(name):
    """Return the shipped sample image ``name`` as a uint8 array at its original size.

    Photographs come back as (H, W, 3) RGB, the textures (brick, grass, gravel) as (H, W)
    grayscale, exactly as scikit-image's ``skimage.data.<name>()`` returns them. An unknown
    name raises ``KeyError`` listing the names that exist.
    """
    if not isinstance(name, str) or name not in SAMPLE_IMAGES:
        raise KeyError(f"no sample image named {name!r}; available: {', '.join(sorted(SAMPLE_IMAGES))}")
    try:
        from PIL import Image
    except ImportError as error:
        raise ImportError(f"reading the sample images needs Pillow: pip install pillow ({error})") from error
    path = os.path.join(DATA_DIR, SAMPLE_IMAGES[name][0])
    with Image.open(path) as image:
        # The files are stored as RGB or L already; converting anything else (a palette or an
        # alpha channel a future file might carry) keeps the promised shapes.
        if image.mode not in ("RGB", "L"):
            image = image.convert("RGB")
        return np.asarray(image, dtype=np.uint8).copy()


def fashion_sample():
    """Return ``(images, labels)``: 2,000 Fashion-MNIST test images, 200 of each class.

    ``images`` is uint8 (2000, 28, 28) (0 = background, 255 = ink, as in the IDX files),
    ``labels`` int64 (2000,) indexing :data:`FASHION_CLASSES`. The images were drawn without
    replacement from the 10,000-image test split with ``numpy.random.default_rng(2015)``
    (200 per class) and are kept in test-set order; their positions in the test split are in
    the file's ``test_indices`` array.
    """
    with np.load(os.path.join(DATA_DIR, _FASHION_FILE)) as archive:
        return archive["images"].copy(), archive["labels"].astype(np.int64)
