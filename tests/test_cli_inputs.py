"""Damaged and unusual inputs: refused in one line (exit 2) and nothing changed, or read right."""

from __future__ import annotations

import json
import struct
import warnings
import zipfile
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from cnnkit import models
from cnnkit.cli import main
from cnnkit.cli.images import read_image
from cnnkit.io import META_KEY, save, save_weights


@pytest.fixture(scope="module")
def run(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("inputs") / "run"
    assert main(["train", "--epochs", "1", "--limit", "64", "--out", str(out)]) == 0
    return out


def refused(capsys, argv, *fragments) -> str:
    status = main(argv)
    err = capsys.readouterr().err
    lines = err.strip().splitlines()
    assert status == 2 and len(lines) == 1 and "Traceback" not in err, (status, err)
    for fragment in fragments:
        assert fragment in lines[0], lines[0]
    return lines[0]


def member_data_offsets(path: Path) -> list[int]:
    """Byte offsets inside the stored data of every member of a zip (.npz) file."""
    offsets = []
    raw = path.read_bytes()
    with zipfile.ZipFile(path) as archive:
        for info in archive.infolist():
            name_len, extra_len = struct.unpack("<HH", raw[info.header_offset + 26 :][:4])
            start = info.header_offset + 30 + name_len + extra_len
            offsets += [start, start + info.compress_size // 2, start + info.compress_size - 1]
    return offsets


def test_truncated_checkpoints(run, tmp_path, capsys):
    data = (run / "checkpoint.npz").read_bytes()
    bad = tmp_path / "bad.npz"
    for size in (0, 1, 30, len(data) // 2, len(data) - 1):
        bad.write_bytes(data[:size])
        refused(capsys, ["evaluate", "--checkpoint", str(bad)], f"checkpoint {bad}", "not a")


def test_bit_flips_in_checkpoint_data_are_caught_by_the_crc(run, tmp_path, capsys):
    source = run / "checkpoint.npz"
    data = source.read_bytes()
    bad = tmp_path / "flipped.npz"
    for offset in member_data_offsets(source):
        flipped = bytearray(data)
        flipped[offset] ^= 0x04
        bad.write_bytes(bytes(flipped))
        line = refused(capsys, ["evaluate", "--checkpoint", str(bad)])
        assert "not a readable .npz file (BadZipFile: Bad CRC-32" in line, line


def test_bit_flips_anywhere_never_crash(run, tmp_path, capsys):
    """A flip in a field zip readers ignore (a local header's time or sizes) may still load:
    the data themselves are CRC-checked above."""
    data = (run / "checkpoint.npz").read_bytes()
    bad = tmp_path / "flipped.npz"
    positions = list(range(0, 120)) + list(range(len(data) - 200, len(data)))
    for offset in positions:
        flipped = bytearray(data)
        flipped[offset] ^= 0x80
        bad.write_bytes(bytes(flipped))
        status = main(["evaluate", "--checkpoint", str(bad)])
        err = capsys.readouterr().err
        assert status in (0, 2) and "Traceback" not in err, (offset, err)
        assert len(err.strip().splitlines()) == (status == 2), (offset, err)


def write_npz(path: Path, meta, **arrays) -> Path:
    if meta is not None:
        arrays[META_KEY] = np.frombuffer(json.dumps(meta).encode(), dtype=np.uint8)
    np.savez(path, **arrays)
    return path


@pytest.mark.parametrize(
    "meta, arrays, message",
    [
        (None, {"a": np.array([{"x": 1}], dtype=object)}, "Object arrays cannot be loaded"),
        (None, {"a": np.zeros(2)}, "has no __meta__ entry; not a cnnkit checkpoint"),
        ([1, 2], {}, "has format version None, expected 1"),
        ({"format_version": 1, "config": 5, "training_state": {}}, {}, "corrupt metadata"),
        (
            {"format_version": 1, "config": {}, "training_state": {"x": {"__array__": "state/x"}}},
            {},
            "training state refers to a missing array 'state/x'",
        ),
        (
            {"format_version": 1, "config": {"name": "lenet5", "bogus": 1}, "training_state": {}},
            {},
            "holds a model config cnnkit cannot build",
        ),
    ],
)
def test_malformed_checkpoints(tmp_path, capsys, meta, arrays, message):
    bad = write_npz(tmp_path / "bad.npz", meta, **arrays)
    refused(capsys, ["evaluate", "--checkpoint", str(bad)], f"checkpoint {bad}", message)


def test_checkpoint_with_broken_data_metadata(run, tmp_path, capsys):
    model = models.get("small_cnn", num_classes=10, in_channels=1)
    bad = tmp_path / "bare.npz"
    save(model, bad)
    refused(capsys, ["evaluate", "--checkpoint", str(bad)], "has no data metadata")
    resumed = ["train", "--resume", str(bad), "--out", str(tmp_path / "r"), "--limit", "16"]
    refused(capsys, resumed, "has no training state (epoch, history, optimizer)")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bare.npz"]


def header_file(header, data=b"", length=None) -> bytes:
    text = json.dumps(header).encode()
    return struct.pack("<Q", len(text) if length is None else length) + text + data


TENSOR = {"a": {"dtype": "F32", "shape": [2], "data_offsets": [0, 8]}}
LYING_HEADERS = {
    "length_huge": (header_file(TENSOR, b"\0" * 8, length=2**60), "header too large"),
    "length_past_end": (header_file(TENSOR, b"\0" * 8, length=10**6), "invalid header length"),
    "offsets_past_end": (
        header_file({"a": {**TENSOR["a"], "data_offsets": [0, 800]}}, b"\0" * 8),
        "invalid shape, data type, or offset",
    ),
    "shape_larger": (
        header_file({"a": {**TENSOR["a"], "shape": [200]}}, b"\0" * 8),
        "invalid shape, data type, or offset",
    ),
    "shape_overflow": (
        header_file({"a": {**TENSOR["a"], "shape": [2**40, 2**40]}}, b"\0" * 8),
        "overflow computing buffer size",
    ),
    "overlapping": (
        header_file({"a": TENSOR["a"], "b": TENSOR["a"]}, b"\0" * 8),
        "invalid offset for tensor",
    ),
    "not_json": (struct.pack("<Q", 5) + b"{{{{{", "invalid JSON in header"),
    "empty": (b"", "header too small"),
}


@pytest.mark.parametrize("name", LYING_HEADERS)
def test_safetensors_with_a_lying_header(tmp_path, capsys, name):
    pytest.importorskip("safetensors")
    data, message = LYING_HEADERS[name]
    path = tmp_path / f"{name}.safetensors"
    path.write_bytes(data)
    image = tmp_path / "x.png"
    Image.new("RGB", (32, 32)).save(image)
    refused(
        capsys,
        ["predict", "--weights", str(path), str(image)],
        f"weights file {path} is not a readable .safetensors file",
        message,
    )


def test_weights_npz_with_object_arrays(tmp_path, capsys):
    path = write_npz(tmp_path / "w.npz", None, a=np.array([{"x": 1}], dtype=object))
    image = tmp_path / "x.png"
    Image.new("RGB", (32, 32)).save(image)
    refused(
        capsys,
        ["predict", "--weights", str(path), str(image)],
        "is not a readable .npz file (Object arrays cannot be loaded when allow_pickle=False)",
    )


def predict(run, *images) -> list[str]:
    return ["predict", "--checkpoint", str(run / "checkpoint.npz"), *map(str, images)]


def test_refused_images(run, tmp_path, capsys, monkeypatch):
    empty = tmp_path / "empty.png"
    empty.write_bytes(b"")
    refused(capsys, predict(run, empty), f"cannot read image {empty}: the file is empty (0 bytes)")
    tiny = tmp_path / "tiny.png"
    Image.new("L", (1, 1)).save(tiny)
    refused(
        capsys,
        predict(run, tiny),
        f"image {tiny} is 1x1 pixels, too small for the model's 8x8 input; expected at least "
        "2x2 (at most 4x enlarged)",
    )
    cut = tmp_path / "cut.png"
    Image.new("L", (64, 64), 3).save(cut)
    cut.write_bytes(cut.read_bytes()[:60])
    refused(capsys, predict(run, cut), f"cannot read image {cut}")
    floats = tmp_path / "float.tif"
    Image.fromarray(np.ones((8, 8), np.float32)).save(floats)
    refused(capsys, predict(run, floats), "image mode F (float pixels) has no fixed grey range")
    bomb = tmp_path / "bomb.png"
    Image.new("1", (100, 100)).save(bomb)
    for limit in (6000, 4000):  # Pillow warns above the limit and refuses above twice it
        monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", limit)
        refused(
            capsys,
            predict(run, bomb),
            f"cannot read image {bomb}: Image size (10000 pixels) exceeds limit",
            f"(Pillow's limit Image.MAX_IMAGE_PIXELS is {limit:,} pixels); refused as a "
            "possible decompression bomb",
        )
    digit = tmp_path / "digit.png"
    Image.new("L", (8, 8)).save(digit)
    refused(capsys, predict(run, digit, empty), "the file is empty")
    assert capsys.readouterr().out == ""  # no prediction printed before the refusal


def test_sixteen_bit_grey_is_scaled_not_clipped(tmp_path):
    deep = np.array([[0, 16384], [32768, 65535]], np.uint16).repeat(4, 0).repeat(4, 1)
    Image.fromarray(deep).save(tmp_path / "deep.png")
    eight = (deep / 257).round().astype(np.uint8)
    Image.fromarray(eight).save(tmp_path / "eight.png")
    got = read_image(tmp_path / "deep.png", [1, 8, 8])
    np.testing.assert_allclose(got, read_image(tmp_path / "eight.png", [1, 8, 8]), atol=1 / 255)
    assert got.max() == pytest.approx(1.0) and 0.45 < got[0, 4, 0] < 0.55
    rgb = read_image(tmp_path / "deep.png", [3, 8, 8])
    assert rgb.shape == (3, 8, 8) and np.array_equal(rgb[0], rgb[2])


def test_cmyk_palette_and_animated_images(run, tmp_path, capsys):
    cmyk = tmp_path / "cmyk.jpg"
    Image.new("CMYK", (16, 16), (0, 0, 0, 0)).save(cmyk)  # no ink: white
    assert read_image(cmyk, [3, 8, 8]).min() > 0.95
    palette = tmp_path / "palette.png"
    image = Image.new("P", (8, 8), 1)
    image.putpalette([0, 0, 0, 255, 255, 255] + [0] * 762)
    image.save(palette, transparency=0)
    assert read_image(palette, [1, 8, 8]).min() == 1.0
    frames = [Image.new("L", (8, 8), v) for v in (40, 200)]
    frames[0].save(tmp_path / "animated.gif", save_all=True, append_images=frames[1:])
    frames[0].save(tmp_path / "first.gif")
    first = read_image(tmp_path / "first.gif", [1, 8, 8])
    assert np.array_equal(read_image(tmp_path / "animated.gif", [1, 8, 8]), first)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # e.g. Pillow's palette-transparency warning
        assert main(predict(run, cmyk, palette, tmp_path / "animated.gif")) == 0
    out = capsys.readouterr()
    assert len(out.out.strip().splitlines()) == 3 and out.err == ""


def test_weights_predict_reads_images_safely(tmp_path, capsys):
    model = models.get("lenet5", num_classes=1000, in_channels=3)
    weights = save_weights(model, tmp_path / "lenet5.npz")
    tiny = tmp_path / "tiny.png"
    Image.new("RGB", (2, 2)).save(tiny)
    argv = ["predict", "--weights", str(weights), "--model", "lenet5", str(tiny)]
    refused(capsys, argv, "is 2x2 pixels, too small for the model's 28x28 input; expected at")
