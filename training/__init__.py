"""Scripts that train the small models shipped in ``weights/``, with minigrad itself.

``python -m training fashion-vgg`` reproduces ``weights/fashion-vgg.safetensors``. They live
outside ``weights`` (which imports NumPy only) because they need minigrad and the shipped data.
"""
