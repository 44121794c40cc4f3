"""``python -m weights``: every error path gives a clear message and its exit code, never a traceback."""

import os
import pickle
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from tests.weights.fixtures import Payload, small_legacy, small_zip, zip_checkpoint
from weights import save_file

ROOT = Path(__file__).resolve().parents[2]


def cli(*args, home):
    env = dict(os.environ, MINIGRAD_HOME=str(home), PYTHONPATH=str(ROOT))
    env.pop("MINIGRAD_DEBUG", None)
    r = subprocess.run([sys.executable, "-m", "weights", *map(str, args)], capture_output=True, text=True,
                       env=env, cwd=home, timeout=120)
    assert "Traceback" not in r.stderr, r.stderr
    return r


@pytest.fixture
def home(tmp_path):
    return tmp_path


def test_list(home):
    r = cli("list", home=home)
    assert r.returncode == 0
    for name in ["alexnet", "vgg11", "vgg11_bn", "vgg13", "vgg13_bn", "vgg16", "vgg16_bn", "vgg19", "vgg19_bn"]:
        assert f"\n{name} " in r.stdout
    assert "397923af8e79cdbb6a7127f12361acd7a2f83e06b05044ddf496e83de57a5bf0" in r.stdout
    assert "https://download.pytorch.org/models/alexnet-owt-7be5be79.pth" in r.stdout
    assert str(home) in r.stdout


def test_usage_errors_exit_2(home):
    r = cli("convert", "x.pth", "--arch", "vgg17", "-o", "y.safetensors", home=home)
    assert r.returncode == 2 and "unknown architecture 'vgg17'" in r.stderr and "vgg16_bn" in r.stderr
    r = cli("fetch", "resnet50", home=home)
    assert r.returncode == 2 and "unknown checkpoint 'resnet50'" in r.stderr
    r = cli("frobnicate", home=home)
    assert r.returncode == 2 and "invalid choice" in r.stderr


def test_missing_file(home):
    r = cli("convert", "missing.pth", "-o", "out.safetensors", home=home)
    assert r.returncode == 1 and "missing.pth: no such file" in r.stderr


def test_keys_that_do_not_fit_are_listed(home):
    data, _ = small_zip()
    (home / "small.pth").write_bytes(data)
    r = cli("convert", "small.pth", "--arch", "vgg16", "-o", "out.safetensors", home=home)
    assert r.returncode == 1
    assert "do not fit vgg16" in r.stderr
    assert "missing key(s): features.0.weight" in r.stderr
    assert "unexpected key(s): conv.weight" in r.stderr
    assert not (home / "out.safetensors").exists()
    r = cli("convert", "small.pth", "-o", "out.safetensors", home=home)  # no --arch: cannot guess
    assert r.returncode == 1 and "cannot tell which architecture" in r.stderr


def test_truncated_file(home):
    data, _ = small_legacy()
    (home / "t.pth").write_bytes(data[: len(data) - 10])
    r = cli("convert", "t.pth", "--arch", "vgg16", "-o", "out.safetensors", home=home)
    assert r.returncode == 1 and "truncated" in r.stderr
    data, _ = small_zip()
    (home / "z.pth").write_bytes(data[: len(data) // 2])
    r = cli("info", "z.pth", home=home)
    assert r.returncode == 1 and "truncated" in r.stderr


def test_wrong_hash(home):
    data, _ = small_zip()
    (home / "vgg16-397923af.pth").write_bytes(data)
    r = cli("convert", "vgg16-397923af.pth", "-o", "out.safetensors", home=home)
    assert r.returncode == 1
    assert "wrong SHA-256 for vgg16" in r.stderr and "397923af8e79cdbb" in r.stderr
    (home / "vgg11-8a719046.pth").write_bytes(data)
    r = cli("convert", "vgg11-8a719046.pth", "-o", "out.safetensors", home=home)
    assert r.returncode == 1 and "does not start with the published prefix 8a719046" in r.stderr
    # --no-hash-check skips to the next problem (the keys)
    r = cli("convert", "vgg11-8a719046.pth", "-o", "out.safetensors", "--no-hash-check", home=home)
    assert r.returncode == 1 and "do not fit vgg11" in r.stderr


def test_unsafe_pickle(home):
    marker = home / "pwned"
    evil = pickle.dumps({"w": Payload(os.system, f"touch '{marker}'")}, protocol=2)
    (home / "evil.pth").write_bytes(zip_checkpoint(evil, {}))
    r = cli("convert", "evil.pth", "--arch", "vgg16", "-o", "out.safetensors", home=home)
    assert r.returncode == 1
    assert "unsafe pickle: global posix.system is not allowed" in r.stderr or "global os.system" in r.stderr
    assert not marker.exists()


def test_refuses_to_overwrite(home):
    (home / "out.safetensors").write_bytes(b"precious")
    data, _ = small_zip()
    (home / "small.pth").write_bytes(data)
    r = cli("convert", "small.pth", "--arch", "vgg16", "-o", "out.safetensors", home=home)
    assert r.returncode == 1 and "already exists" in r.stderr and "--force" in r.stderr
    assert (home / "out.safetensors").read_bytes() == b"precious"


def test_info(home):
    data, _ = small_zip()
    (home / "small.pth").write_bytes(data)
    r = cli("info", "small.pth", home=home)
    assert r.returncode == 0
    assert "zip format" in r.stdout and "conv.weight" in r.stdout and "sha256:" in r.stdout
    save_file({"features.0.weight": np.zeros((2, 3), np.float32)}, home / "s.safetensors", {"arch": "test"})
    r = cli("info", "s.safetensors", home=home)
    assert r.returncode == 0 and "safetensors" in r.stdout and "arch: test" in r.stdout
    assert "features.0.weight" in r.stdout and "[2, 3]" in r.stdout
    (home / "junk.safetensors").write_bytes(b"\x10\0\0\0\0\0\0\0{not json at all}")
    r = cli("info", "junk.safetensors", home=home)
    assert r.returncode == 1 and "not valid JSON" in r.stderr


def test_fetch_verifies_and_removes_a_bad_download(home):
    data, _ = small_zip()
    src = home / "mirror.pth"
    src.write_bytes(data)
    r = cli("fetch", "vgg16", "--url", src.as_uri(), "-q", home=home)
    assert r.returncode == 1 and "wrong SHA-256 for vgg16" in r.stderr
    assert not (home / "checkpoints" / "vgg16-397923af.pth").exists()
    assert not (home / "weights" / "vgg16.safetensors").exists()
    r = cli("fetch", "vgg16", "--url", (home / "nothing.pth").as_uri(), "-q", home=home)
    assert r.returncode == 1 and "download of" in r.stderr and "failed" in r.stderr


@pytest.mark.skipif(not os.path.exists("/proc/self/stat"), reason="needs /proc to see the child waiting")
def test_ctrl_c_during_fetch_removes_the_part_file(home):
    """The download is blocked reading a FIFO (as on a stalled connection) when Ctrl-C comes."""
    import signal
    import time

    fifo = home / "mirror.fifo"
    os.mkfifo(fifo)
    env = dict(os.environ, MINIGRAD_HOME=str(home), PYTHONPATH=str(ROOT))
    proc = subprocess.Popen([sys.executable, "-m", "weights", "fetch", "vgg16", "--url", fifo.as_uri(), "-q"],
                            env=env, cwd=home, stderr=subprocess.PIPE, text=True)
    part = home / "checkpoints" / "vgg16-397923af.pth.part"

    def waiting():  # written its first megabyte and asleep in the next read
        state = open(f"/proc/{proc.pid}/stat").read().rsplit(")", 1)[1].split()[0]
        return part.exists() and part.stat().st_size == 1 << 20 and state == "S"

    try:
        with open(fifo, "wb") as writer:  # opens once the child opens its end
            writer.write(b"\0" * (3 << 19))  # one full 1 MiB chunk is written, the next read waits
            writer.flush()
            settled = 0
            for _ in range(1200):
                settled = settled + 1 if waiting() else 0
                if settled == 5:
                    break
                time.sleep(0.05)
            assert settled == 5
            proc.send_signal(signal.SIGINT)
            _, err = proc.communicate(timeout=60)
    finally:
        proc.kill()
    assert proc.returncode == 130 and "interrupted" in err and "Traceback" not in err
    assert not part.exists() and not (home / "checkpoints" / "vgg16-397923af.pth").exists()


def test_mismatch_listing_of_hostile_keys_stays_short(home):
    from tests.weights.fixtures import T, state_dict_pickle

    names = ["\x1b[2J" + "k" * 5000 + str(i) for i in range(100)]
    spec = [T(n, "0", numel=1, size=(1,)) for n in names]
    (home / "keys.pth").write_bytes(zip_checkpoint(state_dict_pickle(spec), {"0": np.float32([1])}))
    r = cli("convert", "keys.pth", "--arch", "vgg16", "-o", "out.safetensors", home=home)
    assert r.returncode == 1 and "100 unexpected key(s): \\x1b[2Jkkk" in r.stderr
    assert "\x1b" not in r.stderr and max(map(len, r.stderr.splitlines())) <= 420
