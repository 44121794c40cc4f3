"""The registry: entries, hash checks (full digests, prefixes, learnt digests), cache paths,
the progress display, and the arch tables' parameter counts."""

import hashlib
import io
import json
import os

import pytest

from weights import CheckpointError, archs, registry


def test_entries_match_torchvision():
    names = set(registry.CHECKPOINTS)
    assert names == {"alexnet", "vgg11", "vgg11_bn", "vgg13", "vgg13_bn", "vgg16", "vgg16_bn", "vgg19", "vgg19_bn"}
    for c in registry.CHECKPOINTS.values():
        assert c.url == "https://download.pytorch.org/models/" + c.filename
        assert c.filename.rsplit("-", 1)[1].removesuffix(".pth") == c.sha256[:8]  # torch.hub's convention
        assert c.arch in archs.ARCHS and c.fmt in ("zip", "legacy")
    full = {c.name: c.sha256 for c in registry.CHECKPOINTS.values() if c.full_digest}
    assert full["vgg16"] == "397923af8e79cdbb6a7127f12361acd7a2f83e06b05044ddf496e83de57a5bf0"
    assert full["vgg19"] == "dcbb9e9dad569fff7a846263a77324fc34978fea2bfb039c012d710e1776ae44"
    assert full["alexnet"] == "7be5be791159472b1fbf3c69796f7cb30dca7ad8466c2df70058c37116cdee02"


def test_parameter_counts_match_torchvision():
    # torchvision's published num_params for the IMAGENET1K_V1 weights
    want = {"alexnet": 61100840, "vgg11": 132863336, "vgg11_bn": 132868840, "vgg13": 133047848,
            "vgg13_bn": 133053736, "vgg16": 138357544, "vgg16_bn": 138365992, "vgg19": 143667240,
            "vgg19_bn": 143678248}
    assert {a: archs.num_parameters(a) for a in archs.ARCHS} == want


def test_unknown_names():
    with pytest.raises(CheckpointError, match="unknown checkpoint 'resnet'.*vgg16"):
        registry.get("resnet")
    with pytest.raises(CheckpointError, match="unknown architecture"):
        archs.layers("vgg17")


def test_cache_dir_and_resolve(tmp_path, monkeypatch):
    monkeypatch.setenv("MINIGRAD_HOME", str(tmp_path))
    assert registry.cache_dir() == tmp_path
    assert registry.converted_path("vgg16") == tmp_path / "weights" / "vgg16.safetensors"
    with pytest.raises(CheckpointError, match="python -m weights fetch vgg16"):
        registry.resolve("vgg16")
    (tmp_path / "weights").mkdir()
    registry.converted_path("vgg16").write_bytes(b"x")
    assert registry.resolve("vgg16") == registry.converted_path("vgg16")
    monkeypatch.delenv("MINIGRAD_HOME")
    assert registry.cache_dir().parts[-2:] == (".cache", "minigrad")


def test_prefix_digests_are_checked_and_learnt(tmp_path, monkeypatch):
    monkeypatch.setenv("MINIGRAD_HOME", str(tmp_path))
    digest = hashlib.sha256(b"pretend checkpoint").hexdigest()
    entry = registry.Checkpoint("toy", "vgg11", f"toy-{digest[:8]}.pth", digest[:8], 10, "zip")
    registry.verify_sha256(entry, digest, "toy.pth")  # prefix matches: accepted and recorded
    learnt = json.loads((tmp_path / "sha256.json").read_text())
    assert learnt == {entry.filename: digest}
    registry.verify_sha256(entry, digest, "toy.pth")  # same digest again: fine
    other = digest[:8] + "0" * 56
    with pytest.raises(CheckpointError, match="was recorded on first verification"):
        registry.verify_sha256(entry, other, "toy.pth")
    with pytest.raises(CheckpointError, match="does not start with the published prefix"):
        registry.verify_sha256(entry, "f" * 64, "toy.pth")
    full = registry.Checkpoint("toy2", "vgg11", "toy2.pth", digest, 10, "zip")
    with pytest.raises(CheckpointError, match="wrong SHA-256 for toy2"):
        registry.verify_sha256(full, other, "toy2.pth")


def test_progress_display_without_a_terminal():
    out = io.StringIO()
    bar = registry.Progress("file.pth", 1000, stream=out)
    for _ in range(100):
        bar(10)
    bar.close()
    lines = out.getvalue().splitlines()
    assert 10 <= len(lines) <= 12  # one line per 10 %, plus the final one
    assert lines[-1].startswith("file.pth: 0.0/0.0 MiB 100.0%")
    unknown = io.StringIO()
    bar = registry.Progress("x", None, stream=unknown)
    bar(5)
    bar.close()
    assert "MiB" in unknown.getvalue() and "%" not in unknown.getvalue()


def test_download_from_a_file_url(tmp_path):
    src = tmp_path / "src.bin"
    src.write_bytes(b"abc" * 1000)
    dest = tmp_path / "cache" / "dest.bin"
    digest = registry.download(src.as_uri(), dest, progress=False)
    assert digest == hashlib.sha256(b"abc" * 1000).hexdigest()
    assert dest.read_bytes() == b"abc" * 1000 and not (tmp_path / "cache" / "dest.bin.part").exists()
    with pytest.raises(CheckpointError, match="download of .* failed"):
        registry.download((tmp_path / "missing").as_uri(), tmp_path / "cache" / "m.bin", progress=False)
    assert not (tmp_path / "cache" / "m.bin.part").exists()


def test_download_stops_at_the_largest_size_and_leaves_nothing(tmp_path):
    dest = tmp_path / "cache" / "d.bin"
    with pytest.raises(CheckpointError, match="sent more than the 3000000 bytes that d.bin can have"):
        registry.download("file:///dev/zero", dest, max_size=3_000_000, progress=False)
    assert not dest.exists() and list((tmp_path / "cache").iterdir()) == []
    src = tmp_path / "src.bin"
    src.write_bytes(b"x" * 5000)  # file:// URLs announce their size: refused before reading
    with pytest.raises(CheckpointError, match="announces 5000 bytes, more than the 4999"):
        registry.download(src.as_uri(), dest, max_size=4999, progress=False)
    assert list((tmp_path / "cache").iterdir()) == []
    assert registry.download(src.as_uri(), dest, max_size=5000, progress=False) == hashlib.sha256(b"x" * 5000).hexdigest()
    assert registry.CHECKPOINTS["vgg16"].max_size == 553433881  # exact where the size is known
    assert registry.CHECKPOINTS["vgg11"].max_size == registry.CHECKPOINTS["vgg11"].size + 2**20


def test_an_interrupted_download_removes_its_part_file(tmp_path, monkeypatch):
    import urllib.request

    src = tmp_path / "src.bin"
    src.write_bytes(b"y" * (3 << 20))
    real_urlopen = urllib.request.urlopen

    def urlopen(url, timeout):  # a response that is interrupted (Ctrl-C) after its first megabyte
        r = real_urlopen(url, timeout=timeout)
        read, calls = r.read, []

        def interrupted_read(n):
            calls.append(n)
            if len(calls) == 2:
                assert (tmp_path / "cache" / "d.bin.part").stat().st_size == 1 << 20
                raise KeyboardInterrupt
            return read(n)

        r.read = interrupted_read
        return r

    monkeypatch.setattr(urllib.request, "urlopen", urlopen)
    with pytest.raises(KeyboardInterrupt):
        registry.download(src.as_uri(), tmp_path / "cache" / "d.bin", progress=False)
    assert list((tmp_path / "cache").iterdir()) == []


def test_a_link_left_at_the_part_path_is_not_followed(tmp_path):
    (tmp_path / "cache").mkdir()
    precious = tmp_path / "precious.txt"
    precious.write_text("keep me")
    (tmp_path / "cache" / "d.bin.part").symlink_to(precious)
    src = tmp_path / "src.bin"
    src.write_bytes(b"z" * 100)
    registry.download(src.as_uri(), tmp_path / "cache" / "d.bin", progress=False)
    assert precious.read_text() == "keep me"
    assert (tmp_path / "cache" / "d.bin").read_bytes() == b"z" * 100
    assert not (tmp_path / "cache" / "d.bin").is_symlink()


def test_hashing_refuses_what_is_not_a_regular_file(tmp_path):
    with pytest.raises(CheckpointError, match="character device"):
        registry.sha256_file("/dev/zero")
    os.mkfifo(tmp_path / "fifo")
    with pytest.raises(CheckpointError, match="FIFO"):
        registry.sha256_file(tmp_path / "fifo")
