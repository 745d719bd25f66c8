"""Checkpoints: round trips without pickle, atomic writes under a crash, and clear load errors."""

from __future__ import annotations

import json
import zipfile

import numpy as np
import pytest

import cnnkit as ck
from cnnkit import io


def small_model(seed: int = 0):
    return ck.models.get("small_cnn", num_classes=4, in_channels=1, input_size=8, seed=seed)


def test_round_trip_restores_weights_buffers_and_nested_state(tmp_path, rng):
    model = small_model()
    model.train()
    model(rng.standard_normal((4, 1, 8, 8)).astype(np.float32))  # moves BN running statistics
    state = {
        "epoch": 3,
        "by_index": {0: {"step": 2, "exp_avg": rng.standard_normal(5)}, 7: {"lr": 0.1}},
        "history": [{"loss": 0.5}, {"loss": 0.25}],
        "nested": [rng.standard_normal((2, 3)).astype(np.float32), "text", None],
    }
    path = io.save_checkpoint(tmp_path / "ckpt.npz", model, state)

    checkpoint = io.load_checkpoint(path)
    assert checkpoint.config == model.config
    for key, value in model.state_dict().items():
        np.testing.assert_array_equal(checkpoint.model_state[key], value)
        assert checkpoint.model_state[key].dtype == value.dtype
    restored = checkpoint.training_state
    assert restored["epoch"] == 3
    assert set(restored["by_index"]) == {0, 7}
    np.testing.assert_array_equal(
        restored["by_index"][0]["exp_avg"], state["by_index"][0]["exp_avg"]
    )
    np.testing.assert_array_equal(restored["nested"][0], state["nested"][0])
    assert restored["nested"][1:] == ["text", None]
    assert restored["history"] == state["history"]


def test_checkpoint_is_a_plain_npz_readable_without_pickle(tmp_path):
    path = io.save_checkpoint(tmp_path / "ckpt.npz", small_model(), {"epoch": 1})
    with np.load(path, allow_pickle=False) as archive:
        meta = json.loads(archive["__meta__"].tobytes().decode())
        assert meta["config"]["name"] == "small_cnn"
        assert all(archive[k].dtype != object for k in archive.files)


def test_load_rebuilds_the_zoo_model(tmp_path, rng):
    model = small_model(seed=3).eval()
    x = rng.standard_normal((2, 1, 8, 8)).astype(np.float32)
    io.save(model, tmp_path / "m.npz")
    again = io.load(tmp_path / "m.npz").eval()
    np.testing.assert_array_equal(again(x), model(x))


def test_crash_during_write_keeps_the_previous_checkpoint(tmp_path, monkeypatch):
    path = tmp_path / "ckpt.npz"
    io.save_checkpoint(path, small_model(seed=1), {"epoch": 1})
    before = path.read_bytes()

    def crash(file, **arrays):
        file.write(b"partial bytes")
        raise OSError("disk full")

    monkeypatch.setattr(io.np, "savez", crash)
    with pytest.raises(OSError, match="disk full"):
        io.save_checkpoint(path, small_model(seed=2), {"epoch": 2})
    assert path.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["ckpt.npz"]


def test_missing_file(tmp_path):
    with pytest.raises(io.CheckpointError, match=r"checkpoint .*nope\.npz does not exist"):
        io.load_checkpoint(tmp_path / "nope.npz")


def test_not_an_npz(tmp_path):
    path = tmp_path / "bad.npz"
    path.write_bytes(b"this is not a zip archive")
    with pytest.raises(io.CheckpointError, match=r"bad\.npz is not a readable \.npz file"):
        io.load_checkpoint(path)


def test_npz_without_metadata(tmp_path):
    path = tmp_path / "plain.npz"
    np.savez(path, weights=np.zeros(3))
    with pytest.raises(io.CheckpointError, match="has no __meta__ entry; not a cnnkit checkpoint"):
        io.load_checkpoint(path)


def test_corrupt_metadata(tmp_path):
    path = tmp_path / "corrupt.npz"
    np.savez(path, __meta__=np.frombuffer(b"{not json", dtype=np.uint8))
    with pytest.raises(io.CheckpointError, match="has corrupt metadata"):
        io.load_checkpoint(path)


def test_unknown_format_version(tmp_path):
    path = tmp_path / "future.npz"
    meta = json.dumps({"format_version": 99, "config": {}, "training_state": {}}).encode()
    np.savez(path, __meta__=np.frombuffer(meta, dtype=np.uint8))
    with pytest.raises(io.CheckpointError, match="format version 99, expected 1"):
        io.load_checkpoint(path)


def test_truncated_archive(tmp_path):
    path = io.save_checkpoint(tmp_path / "ckpt.npz", small_model(), {})
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(io.CheckpointError, match="not a readable .npz file"):
        io.load_checkpoint(path)
    assert not zipfile.is_zipfile(path)


def test_checkpoint_of_another_model_is_refused(tmp_path):
    path = io.save_checkpoint(tmp_path / "ckpt.npz", small_model(), {})
    other = ck.models.get("lenet5", num_classes=4, in_channels=1, input_size=8)
    with pytest.raises(
        io.CheckpointError, match="holds model 'small_cnn', but the model is 'lenet5'"
    ):
        io.load_model_state(other, io.load_checkpoint(path))


def test_checkpoint_with_other_shapes_is_refused(tmp_path):
    path = io.save_checkpoint(tmp_path / "ckpt.npz", small_model(), {})
    wider = ck.models.get("small_cnn", num_classes=5, in_channels=1, input_size=8)
    with pytest.raises(io.CheckpointError, match=r"does not fit the model: .*fc\.weight"):
        io.load_model_state(wider, io.load_checkpoint(path))
