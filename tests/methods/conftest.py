import pytest

import minigrad


@pytest.fixture(autouse=True, scope="module")
def reference_kernels():
    """The methods tests are about the techniques, not the kernels (those have their own parity
    tests against the reference): run them on the NumPy reference, whose cost on tiny arrays
    does not include Numba's compilation and thread-pool start-up."""
    with minigrad.backend.using_backend("reference"):
        yield


@pytest.fixture(autouse=True, scope="session")
def scan_cache(tmp_path_factory):
    """Folder scans keep their shards in a cache (methods.lib.scan.cache_root): the tests' go to a
    temporary folder, never to the user's ~/.cache."""
    import os

    previous = os.environ.get("MINIGRAD_SCAN_CACHE")
    os.environ["MINIGRAD_SCAN_CACHE"] = str(tmp_path_factory.mktemp("scan-cache"))
    yield os.environ["MINIGRAD_SCAN_CACHE"]
    if previous is None:
        del os.environ["MINIGRAD_SCAN_CACHE"]
    else:
        os.environ["MINIGRAD_SCAN_CACHE"] = previous
