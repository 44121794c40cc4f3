"""minigrad must import and run with NumPy alone: the optional packages are blocked here."""

import pathlib
import subprocess
import sys
import textwrap

ROOT = pathlib.Path(__file__).resolve().parent.parent
BLOCKED = ("numba", "cupy", "cupyx", "PIL", "matplotlib", "torch", "scipy", "llvmlite")

SCRIPT = textwrap.dedent(
    f"""
    import importlib.abc, sys

    class Block(importlib.abc.MetaPathFinder):
        def find_spec(self, name, path=None, target=None):
            if name.split(".")[0] in {BLOCKED!r}:
                raise ImportError(f"No module named {{name!r}} (blocked by the test)", name=name)
            return None

    sys.meta_path.insert(0, Block())

    import numpy as np
    import kernels, weights, minigrad
    from minigrad import functional as F

    assert minigrad.get_backend() == "reference", minigrad.get_backend()
    rng = np.random.default_rng(0)
    x = minigrad.tensor(rng.standard_normal((1, 3, 8, 8)), requires_grad=True)
    w = minigrad.tensor(rng.standard_normal((4, 3, 3, 3)), requires_grad=True)
    y = F.max_pool2d(F.relu(F.conv2d(x, w, padding=1)), 2)
    y.sum().backward()
    assert x.grad.shape == (1, 3, 8, 8) and w.grad.shape == (4, 3, 3, 3)
    assert np.abs(x.grad).sum() > 0
    try:
        kernels.load("numba")
    except ImportError as error:
        assert "numba" in str(error), error
    else:
        raise AssertionError("numba was blocked but loaded")
    loaded = sorted(m for m in sys.modules if m.split(".")[0] in {BLOCKED!r})
    assert not loaded, loaded
    print("ok")
    """
)


def test_import_and_backward_with_numpy_alone():
    result = subprocess.run([sys.executable, "-c", SCRIPT], capture_output=True, text=True, timeout=120, cwd=ROOT)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip().endswith("ok")


LIGHT = textwrap.dedent(
    """
    import sys
    import minigrad
    assert "minigrad.models" not in sys.modules and "weights" not in sys.modules, "import minigrad loaded models"
    import weights, weights.safetensors, weights.torch_pth, weights.convert, weights.registry
    heavy = sorted(m for m in sys.modules if m.split(".")[0] in ("methods", "training")
                   or m.startswith("minigrad.models"))
    assert not heavy, heavy
    minigrad.models.load  # loaded on first use
    print("ok")
    """
)


def test_import_minigrad_is_light_and_weights_imports_numpy_only():
    result = subprocess.run([sys.executable, "-c", LIGHT], capture_output=True, text=True, timeout=120, cwd=ROOT)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip().endswith("ok")
