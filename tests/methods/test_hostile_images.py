"""Images as untrusted input (issue 12 item 10): sizes are checked from the header before any
decoding, from --image and from --dataset, and odd modes are converted, not misread."""

import struct
import zlib

import numpy as np
import pytest

from methods.__main__ import main
from minigrad import models


def png_header_only(path, width, height):
    """A PNG whose header claims ``width`` x ``height`` (a decompression bomb's first bytes) with one
    tiny IDAT: decoding it would need width * height bytes, reading its header needs none."""
    def chunk(kind, data):
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\0" * 64))
                     + chunk(b"IEND", b""))
    return path


@pytest.mark.parametrize("side", [30000, 12000])
def test_a_bomb_is_refused_from_the_header(tmp_path, capsys, side):
    bomb = png_header_only(tmp_path / "bomb.png", side, side)
    code = main(["saliency", "--image", str(bomb), "--out", str(tmp_path / "out")])
    err = capsys.readouterr().err
    assert code == 2 and "megapixels" in err and "64" in err and "allowed" in err and "Traceback" not in err
    folder = tmp_path / "images"
    folder.mkdir()
    png_header_only(folder / "bomb.png", side, side)
    code = main(["patches", "--dataset", str(folder), "--out", str(tmp_path / "out2")])
    assert code == 2 and "megapixels" in capsys.readouterr().err
    assert not (tmp_path / "out").exists() and not (tmp_path / "out2").exists()


def test_a_large_photo_is_resized_not_refused(tmp_path):
    Image = pytest.importorskip("PIL.Image")
    photo = tmp_path / "photo.png"
    Image.fromarray(np.random.default_rng(0).integers(0, 256, (3024, 4032, 3), dtype=np.uint8)).save(photo)
    model = models.ConvNet("alexnet", init=None)
    with pytest.warns(models.PreprocessingNote, match="4032x3024 resized"):
        assert model.preprocess(photo).shape == (1, 3, 224, 224)


def test_a_16_bit_png_keeps_its_grey_levels(tmp_path):
    Image = pytest.importorskip("PIL.Image")
    levels = (np.arange(28 * 28, dtype=np.uint32).reshape(28, 28) * 83 % 65536).astype(np.uint16)
    path = tmp_path / "sixteen.png"
    Image.fromarray(levels).save(path)
    model = models.load("fashion-vgg")
    pixels = model.prepare_images(str(path))[0, ..., 0]
    np.testing.assert_array_equal(pixels, (levels // 257).astype(np.uint8))
    assert pixels.mean() < 200  # 16-bit values were once clipped to 255: a white image
