import pytest

import minigrad


@pytest.fixture(autouse=True, scope="module")
def reference_kernels():
    """The methods tests are about the techniques, not the kernels (those have their own parity
    tests against the reference): run them on the NumPy reference, whose cost on tiny arrays
    does not include Numba's compilation and thread-pool start-up."""
    with minigrad.backend.using_backend("reference"):
        yield
