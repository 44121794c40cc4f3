"""Scripts that train the small models shipped in ``weights/``, with minigrad itself.

``python -m training fashion-vgg`` reproduces ``weights/fashion-vgg.safetensors``, and
``python -m training fashion-bagnet-q13`` (``-q9``, ``-q5``) the BagNets. ``training/loop.py`` is
the loop they share; each model's file registers its recipe. They live outside ``weights`` (which
imports NumPy only) because they need minigrad and the shipped data.
"""

from training import bagnet, fashion_vgg  # noqa: F401  (each registers its models)
