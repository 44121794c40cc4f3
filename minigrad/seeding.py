"""One random generator for initialisation, dropout and the methods, so runs repeat given a seed."""

import numpy as np

_state = {"generator": np.random.default_rng(0)}


def manual_seed(seed):
    """Reset minigrad's random generator; everything random after this repeats exactly."""
    _state["generator"] = np.random.default_rng(seed)
    return _state["generator"]


def random_generator():
    """The ``numpy.random.Generator`` minigrad draws from (on the CPU, also for GPU tensors)."""
    return _state["generator"]
