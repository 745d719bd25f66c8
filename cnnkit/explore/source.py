"""What `cnnkit explore` shows: a model in eval mode, how an image enters it, and its test images.

Three sources, as the command line names them:

- ``--checkpoint PATH`` (or ``--run DIR``, whose ``checkpoint.npz`` it is): a `cnnkit train` run.
  The checkpoint records the data set, the image shape, the class names and the training set's
  per-channel mean and std (``training_state["metadata"]["data"]``); images are scaled to [0, 1],
  converted to the model's channels, resized to its input size and normalised with them, as
  `cnnkit predict` does. The test split comes from the same data set (the bundled 8x8 digits need
  no files); when it cannot be loaded the page still takes uploads and drawings.
- ``--model NAME --weights FILE``: an ImageNet model from a weights file, images prepared as
  `cnnkit predict --weights` prepares them (shorter side resized, centre crop, [-1, 1]).
- ``--model NAME`` alone: that architecture untrained (seed 0), on the 8x8 digits.
- ``--onnx FILE``: an ONNX model imported on cnnkit layers (cnnkit.onnx.inputs says how its
  images are prepared; a `cnnkit export` file brings its data set's test split).

Files are only ever read. A run's checkpoint that is replaced while training goes on is reloaded
(``refresh``): training writes it atomically, so a reader sees the old file or the new one.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from cnnkit import models
from cnnkit.data import DatasetError, compute_mean_std, load_dataset, load_digits, to_float_nchw
from cnnkit.imagenet import center_crop_resize, class_names_for
from cnnkit.io import CheckpointError, load_checkpoint, load_model_state, load_pretrained
from cnnkit.nn.module import Module
from cnnkit.viz import VizError, load_metrics

CHECKPOINT_NAME = "checkpoint.npz"


class ExploreError(ValueError):
    """The explorer cannot start from these arguments (one line, exit status 2)."""


@dataclass
class Subject:
    """A model to explore with everything needed to feed it one image and to name its classes.

    ``mean``/``std`` normalise pixels in [0, 1] ("dataset" inputs); ``imagenet`` inputs are
    scaled to [-1, 1] instead. ``test_images`` are float32 (N, C, H, W) in [0, 1] or None.
    """

    model: Module
    name: str
    origin: str
    input_shape: tuple[int, int, int]
    class_names: list[str]
    mean: np.ndarray | None = None
    std: np.ndarray | None = None
    test_images: np.ndarray | None = None
    test_labels: np.ndarray | None = None
    dataset: str | None = None
    notes: list[str] = field(default_factory=list)
    checkpoint: Path | None = None
    run_dir: Path | None = None
    checkpoint_stamp: int | None = None
    epoch: int | None = None
    crop: bool = False

    @property
    def imagenet(self) -> bool:
        """Whether images are prepared as for an ImageNet model (no recorded mean and std)."""
        return self.mean is None

    def model_input(self, pixels: np.ndarray) -> np.ndarray:
        """Pixels (C, H, W) in [0, 1] as the model's input: normalised, or scaled to [-1, 1]."""
        pixels = np.asarray(pixels, np.float32)
        if self.imagenet:
            return pixels * np.float32(2) - np.float32(1)
        return ((pixels - self.mean) / self.std).astype(np.float32)

    def pixels_from_image(self, image) -> np.ndarray:
        """A decoded PIL image as pixels (C, H, W) in [0, 1], resized as `cnnkit predict` does
        (a centre crop for ImageNet models, as `cnnkit predict --weights`)."""
        channels, height, width = self.input_shape
        mode = "L" if channels == 1 else "RGB"
        image = image.convert(mode)
        if self.imagenet or self.crop:
            image = center_crop_resize(image, (height, width))
        else:
            image = image.resize((width, height))
        pixels = np.asarray(image, np.float32) / np.float32(255)
        return pixels[None] if channels == 1 else pixels.transpose(2, 0, 1)

    def test_pixels(self, index: int) -> np.ndarray:
        """Test image ``index`` as pixels (C, H, W) in [0, 1]."""
        count = 0 if self.test_images is None else len(self.test_images)
        if count == 0:
            raise IndexError("there are no test images here: upload or draw an image")
        if not 0 <= index < count:
            raise IndexError(f"test image index {index} is out of range (0..{count - 1})")
        return to_float_nchw(self.test_images[index : index + 1])[0]

    def refresh(self) -> bool:
        """Reload the checkpoint's weights if its file was replaced; True when it was."""
        if self.checkpoint is None:
            return False
        try:
            stamp = os.stat(self.checkpoint).st_mtime_ns
        except OSError:  # not written yet (a run before its first epoch)
            return False
        if stamp == self.checkpoint_stamp:
            return False
        try:
            checkpoint = load_checkpoint(self.checkpoint)
            load_model_state(self.model, checkpoint, source=f"checkpoint {self.checkpoint}")
        except CheckpointError:
            return False
        self.checkpoint_stamp = stamp
        self.epoch = checkpoint.training_state.get("epoch", self.epoch)
        self.model.eval()
        return True


def _test_split(dataset: str, data_dir, image_shape) -> tuple[np.ndarray | None, ...]:
    """(images, labels, note): the data set's test split, or None and why it is missing."""
    try:
        test = load_dataset(dataset, data_dir).test
    except DatasetError as error:
        return None, None, f"no test images: {error}"
    if list(test.image_shape) != list(image_shape):
        return None, None, f"no test images: {dataset} has shape {test.image_shape}"
    return test.images, test.labels, None


def _described(model: Module, name: str, origin: str, data: dict, data_dir, **more) -> Subject:
    """A subject whose images are prepared as the data description ``data`` says (a
    checkpoint's data metadata), with its data set's test split when it names one (only an
    ONNX file not written by `cnnkit export` names none)."""
    shape = tuple(int(s) for s in data["image_shape"])
    images = labels = None
    notes = ["no test images for an ONNX model without cnnkit data metadata: upload an image"]
    if data["dataset"] is not None:
        images, labels, note = _test_split(data["dataset"], data_dir, shape)
        notes = [note] if note else []
    return Subject(
        model=model.eval(),
        name=name,
        origin=origin,
        input_shape=shape,
        class_names=[str(n) for n in data["class_names"]],
        mean=np.asarray(data["mean"], np.float32).reshape(-1, 1, 1),
        std=np.asarray(data["std"], np.float32).reshape(-1, 1, 1),
        test_images=images,
        test_labels=labels,
        dataset=data["dataset"],
        notes=notes,
        **more,
    )


def from_checkpoint(path, data_dir=None, run_dir=None) -> Subject:
    """The model of a `cnnkit train` checkpoint, with its data set's test split."""
    path = Path(path)
    checkpoint = load_checkpoint(path)
    config = dict(checkpoint.config)
    if config.get("name") not in models.list():
        raise CheckpointError(f"checkpoint {path} names unknown model {config.get('name')!r}")
    data = checkpoint.training_state.get("metadata", {}).get("data")
    if data is None:
        raise CheckpointError(
            f"checkpoint {path} has no data metadata (not written by `cnnkit train`)"
        )
    model = models.get(**config)
    load_model_state(model, checkpoint, source=f"checkpoint {path}")
    return _described(
        model,
        config["name"],
        f"checkpoint {path}",
        data,
        data_dir,
        checkpoint=path,
        run_dir=None if run_dir is None else Path(run_dir),
        checkpoint_stamp=os.stat(path).st_mtime_ns,
        epoch=checkpoint.training_state.get("epoch"),
    )


def from_training(run_dir, model: Module, data: dict, data_dir=None) -> Subject:
    """A copy of a model about to be trained into ``run_dir`` (`cnnkit train --explore`): its
    initial weights now, the weights of each checkpoint the run writes from then on."""
    run_dir = Path(run_dir)
    copy = models.get(**model.config)
    copy.load_state_dict(model.state_dict())
    checkpoint = run_dir / CHECKPOINT_NAME
    return _described(
        copy,
        model.config["name"],
        f"training run {run_dir}",
        data,
        data_dir,
        checkpoint=checkpoint,
        run_dir=run_dir,
        checkpoint_stamp=os.stat(checkpoint).st_mtime_ns if checkpoint.is_file() else None,
    )


def from_weights(name: str, path, layout: str = "auto") -> Subject:
    """An ImageNet model ``name`` with the weights in ``path`` (see cnnkit.io.load_pretrained)."""
    model, layout = load_pretrained(name, path, layout)
    return Subject(
        model=model,
        name=name,
        origin=f"weights {path} ({layout} layout)",
        input_shape=tuple(model.default_input_shape),
        class_names=class_names_for(model.config["num_classes"]),
        notes=["no test images for ImageNet weights: upload an image"],
    )


def from_onnx(path, data_dir=None) -> Subject:
    """An ONNX model imported on cnnkit layers, its images prepared as cnnkit.onnx.inputs
    describes (a `cnnkit export` file: as its training run, with its data set's test split)."""
    try:
        from cnnkit import onnx
        from cnnkit.onnx.inputs import describe
    except ImportError as error:
        raise ExploreError(
            f"--onnx needs the onnx package ({error}); install it with pip install 'cnnkit[onnx]'"
        ) from None
    try:
        model = onnx.load(path)
        data = describe(model)
    except ValueError as error:  # not ONNX, an unsupported operator, no fixed image shape
        raise ExploreError(str(error)) from None
    origin = f"ONNX model {path} ({model.metadata['producer'] or 'unknown producer'})"
    return _described(model, Path(path).stem, origin, data, data_dir, crop=bool(data["crop"]))


def untrained(name: str) -> Subject:
    """Zoo model ``name`` with its initial weights (seed 0), sized for the 8x8 digits."""
    digits = load_digits()
    options = {"input_size": [8, 8]} if models.takes_option(name, "input_size") else {}
    try:
        model = models.get(name, num_classes=10, in_channels=1, seed=0, **options)
        models.trace(model, (1, 8, 8))
    except ValueError as error:
        raise ExploreError(f"model {name!r} cannot take the 8x8 digits ({error})") from None
    mean, std = compute_mean_std(digits.train.images)
    return Subject(
        model=model.eval(),
        name=name,
        origin="untrained (initial weights, seed 0)",
        input_shape=(1, 8, 8),
        class_names=list(digits.test.class_names),
        mean=np.asarray(mean, np.float32).reshape(-1, 1, 1),
        std=np.maximum(np.asarray(std, np.float32), 1e-6).reshape(-1, 1, 1),
        test_images=digits.test.images,
        test_labels=digits.test.labels,
        dataset="digits",
        notes=["untrained weights: train a model and pass --checkpoint to see what it learned"],
    )


def run_history(run_dir: Path) -> dict:
    """A run's per-epoch history: metrics.json when training has finished, else the checkpoint's."""
    try:
        metrics = load_metrics(run_dir)
        return {"source": "metrics.json", "finished": True, "history": metrics.get("history", [])}
    except VizError:
        pass
    path = run_dir / CHECKPOINT_NAME
    if not path.is_file():
        return {"source": None, "finished": False, "history": []}
    try:
        history = load_checkpoint(path).training_state.get("history", [])
    except CheckpointError:
        history = []
    return {"source": CHECKPOINT_NAME, "finished": False, "history": history}
