import pytest

import minigrad


@pytest.fixture(autouse=True, scope="module")
def reference_kernels():
    """The methods tests are about the techniques, not the kernels (those have their own parity
    tests against the reference): run them on the NumPy reference, whose cost on tiny arrays
    does not include Numba's compilation and thread-pool start-up."""
    with minigrad.backend.using_backend("reference"):
        yield


@pytest.fixture(scope="module")
def compiled_kernels(reference_kernels):
    """For modules that train networks for hundreds of steps (Deep Image Prior, colorization):
    the compiled kernels when Numba is installed, several times faster there than the reference.
    Use with ``pytestmark = pytest.mark.usefixtures("compiled_kernels")``."""
    try:
        import numba  # noqa: F401
    except ImportError:
        yield
        return
    with minigrad.backend.using_backend("numba"):
        yield


@pytest.fixture
def ctrl_c_on_call(monkeypatch):
    """``ctrl_c_on_call(owner, name, n)``: the n-th call from now on of ``owner.name`` (a
    module's function or a class's method) raises KeyboardInterrupt instead of running, as a
    Ctrl-C at that point would; the calls before it run the real thing."""

    def arm(owner, name, n):
        original = getattr(owner, name)
        calls = []

        def interrupted(*args, **kwargs):
            calls.append(1)
            if len(calls) == n:
                raise KeyboardInterrupt
            return original(*args, **kwargs)

        monkeypatch.setattr(owner, name, interrupted)

    return arm


@pytest.fixture
def ctrl_c_at_step(ctrl_c_on_call):
    """``ctrl_c_at_step(n)``: the n-th Adam update from now on raises KeyboardInterrupt instead
    (Ctrl-C in the middle of a training loop)."""
    return lambda n: ctrl_c_on_call(minigrad.optim.Adam, "step", n)


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
