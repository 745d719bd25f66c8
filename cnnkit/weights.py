"""Weights of other frameworks: read .safetensors / .npz files and convert their layouts.

Three layouts name and shape the same tensors differently (docs/weights.md has the full tables):

* ``"cnnkit"``: cnnkit's own state_dict names and shapes (PyTorch's), e.g. ``conv1.weight``
  (C_out, C_in, kH, kW) and ``block1.rep.0.depthwise.weight`` (C, 1, kH, kW);
* ``"timm"``: timm's ``legacy_xception`` state_dict (PyTorch shapes); only the depthwise conv of a
  separable conv is named differently, ``conv1`` instead of ``depthwise``
  (see :func:`cnnkit.models.xception.timm_key_map`);
* ``"keras"``: the variables of ``keras.applications.Xception`` as ``layer/variable`` (Keras 3's
  ``variable.path``; tf.keras' ``:0`` suffix is accepted too) in channels-last order: conv kernel
  (kH, kW, C_in, C_out), depthwise kernel (kH, kW, C, 1), pointwise kernel (1, 1, C_in, C_out),
  dense kernel (in, out), batch norm gamma / beta / moving_mean / moving_variance.

:func:`convert_state` checks that every name the model needs is in the file, that the file has no
name the model lacks and that every shape fits, and raises a one-line :class:`WeightsError` at the
first mismatch; then it transposes each array into cnnkit's layout. :func:`export_state` is the
inverse. The loading itself is :func:`cnnkit.io.load_weights`.

The frameworks also compute differently (batch-norm eps 1e-3 vs 1e-5, max-pool 'same' padding of
TensorFlow vs symmetric padding 1): build the model with the matching ``flavor`` to reproduce the
source's numbers (:func:`flavor_mismatch` says when it does not match).
"""

from __future__ import annotations

import os
import re
import struct
import zipfile
import zlib
from io import BytesIO
from pathlib import Path

import numpy as np

from cnnkit.models.xception import FLAVORS, Xception, XceptionBlock, timm_key_map
from cnnkit.nn import BatchNorm2d, Conv2d, Linear, MaxPool2d, Module, SeparableConv2d

LAYOUTS = ("cnnkit", "timm", "keras")
SUFFIXES = (".safetensors", ".npz")
# Batch-norm counters: PyTorch state dicts may hold them, Keras has none; never required.
OPTIONAL_SUFFIX = ".num_batches_tracked"

# How an array in a file becomes cnnkit's array: axes for np.transpose (None = unchanged), and
# the inverse permutation for export. Keras computes y[i, j, o] = sum K[u, v, c, o] x[i+u, j+v, c]
# where PyTorch has w[o, c, u, v]; a depthwise kernel K[u, v, c, 0] is PyTorch's w[c, 0, u, v].
TRANSFORMS: dict[str, tuple[tuple[int, ...] | None, tuple[int, ...] | None]] = {
    "copy": (None, None),
    "conv": ((3, 2, 0, 1), (2, 3, 1, 0)),  # (kH, kW, C_in, C_out) <-> (C_out, C_in, kH, kW)
    "depthwise": ((2, 3, 0, 1), (2, 3, 0, 1)),  # (kH, kW, C, 1) <-> (C, 1, kH, kW)
    "dense": ((1, 0), (1, 0)),  # (in, out) <-> (out, in)
}

# cnnkit variable name -> (Keras variable name, transform), per layer type.
KERAS_VARIABLES = {
    Conv2d: {"weight": ("kernel", "conv"), "bias": ("bias", "copy")},
    BatchNorm2d: {
        "weight": ("gamma", "copy"),
        "bias": ("beta", "copy"),
        "running_mean": ("moving_mean", "copy"),
        "running_var": ("moving_variance", "copy"),
    },
    Linear: {"weight": ("kernel", "dense"), "bias": ("bias", "copy")},
}
KERAS_SEPARABLE = {
    "depthwise.weight": ("depthwise_kernel", "depthwise"),
    "pointwise.weight": ("pointwise_kernel", "conv"),
    "depthwise.bias": ("bias", "copy"),
    "pointwise.bias": ("bias", "copy"),
}
# Keras numbers unnamed layers per session: conv2d, conv2d_1, ... in a fresh one.
KERAS_AUTO_NAME = re.compile(r"^(conv2d|batch_normalization)(?:_(\d+))?(/.*)$")


# What reading a damaged .npz can raise: zip structure, CRC, compression method, .npy header,
# or a header that claims an impossible array.
DAMAGED_NPZ = (
    OSError,
    ValueError,
    EOFError,
    KeyError,
    NotImplementedError,
    OverflowError,
    MemoryError,
    struct.error,
    zlib.error,
    zipfile.BadZipFile,
)


class WeightsError(ValueError):
    """A weights file is missing, unreadable, or does not fit the model it is loaded into."""


# ----------------------------------------------------------------------------- files


def _safetensors():
    """The safetensors package, imported on first use (it is an optional dependency)."""
    try:
        import safetensors
        import safetensors.numpy
    except ImportError:
        raise WeightsError(
            "reading .safetensors files needs the safetensors package: "
            "pip install safetensors (or pip install 'cnnkit[interchange]')"
        ) from None
    return safetensors


def _check_file(path: Path) -> None:
    if not path.is_file():
        raise WeightsError(f"weights file {path} does not exist")
    if path.suffix.lower() not in SUFFIXES:
        raise WeightsError(
            f"weights file {path} has suffix {path.suffix!r}; expected .safetensors or .npz "
            "(docs/weights.md shows how to convert .pth and .h5 files)"
        )


def _read(path: str | os.PathLike, names_only: bool):
    path = Path(path)
    _check_file(path)
    if path.suffix.lower() == ".safetensors":
        st = _safetensors()
        try:
            if names_only:
                with st.safe_open(str(path), framework="np") as f:
                    return list(f.keys())
            return dict(st.numpy.load_file(str(path)))
        except (OSError, ValueError, st.SafetensorError) as error:
            raise WeightsError(
                f"weights file {path} is not a readable .safetensors file ({error})"
            ) from None
    try:
        with np.load(path, allow_pickle=False) as archive:
            if names_only:
                return list(archive.files)
            return {name: archive[name] for name in archive.files}
    except DAMAGED_NPZ as error:
        raise WeightsError(f"weights file {path} is not a readable .npz file ({error})") from None


def read_arrays(path: str | os.PathLike) -> dict[str, np.ndarray]:
    """Every named array of a .safetensors or .npz file (.npz read with allow_pickle=False)."""
    return _read(path, names_only=False)


def read_names(path: str | os.PathLike) -> list[str]:
    """The array names in a .safetensors or .npz file, without reading the arrays."""
    return _read(path, names_only=True)


def to_bytes(arrays: dict[str, np.ndarray], path: str | os.PathLike) -> bytes:
    """Named arrays encoded as a .safetensors or .npz file, chosen by ``path``'s suffix."""
    path = Path(path)
    arrays = {k: np.asarray(v, order="C") for k, v in arrays.items()}
    suffix = path.suffix.lower()
    if suffix == ".safetensors":
        return _safetensors().numpy.save(arrays)
    if suffix == ".npz":
        buffer = BytesIO()
        np.savez(buffer, **arrays)
        return buffer.getvalue()
    raise WeightsError(f"cannot write weights to {path}: expected a .safetensors or .npz suffix")


# ----------------------------------------------------------------------------- name maps


def _check_layout(layout) -> None:
    if layout not in LAYOUTS:
        raise WeightsError(f"unknown weights layout {layout!r}; choose from {', '.join(LAYOUTS)}")


def _require_xception(model: Module, layout: str) -> None:
    if not isinstance(model, Xception):
        raise WeightsError(
            f"the {layout!r} layout is defined for Xception only, got {type(model).__name__}; "
            "use layout 'cnnkit' for cnnkit's own names"
        )


def _children(module: Module) -> list[tuple[str, Module]]:
    return [(n, m) for n, m in module.named_modules() if n and "." not in n]


def keras_layer_names(model: Xception) -> dict[str, str]:
    """cnnkit module name -> the Keras layer name of keras.applications.Xception, for every layer
    that holds weights.

    Keras numbers its blocks from the stem: block1_conv1/conv2 are cnnkit's conv1/conv2, cnnkit's
    blockK is Keras' block(K+1) (its k-th separable conv ``block(K+1)_sepconv{k}`` and the batch
    norm after it ``..._bn``), the final separable convs conv3/conv4 are block14_sepconv1/2 (the
    block after the last one), fc is ``predictions``. The residual 1x1 convs and their batch norms
    have no names in Keras' code: conv2d, conv2d_1, ... and batch_normalization, ..._1, in order.
    """
    _require_xception(model, "keras")
    children = _children(model)
    blocks = sum(isinstance(m, XceptionBlock) for _, m in children)
    stem = sum(isinstance(m, Conv2d) and n.startswith("conv") for n, m in children)
    names, residual = {}, 0
    for name, module in children:
        if isinstance(module, XceptionBlock):
            index = int(name[len("block") :]) + 1
            if module.skip is not None:
                suffix = f"_{residual}" if residual else ""
                names[f"{name}.skip"] = f"conv2d{suffix}"
                names[f"{name}.skipbn"] = f"batch_normalization{suffix}"
                residual += 1
            separable = 0
            for i, layer in enumerate(module.rep):
                if isinstance(layer, SeparableConv2d):
                    separable += 1
                    names[f"{name}.rep.{i}"] = f"block{index}_sepconv{separable}"
                elif isinstance(layer, BatchNorm2d):
                    names[f"{name}.rep.{i}"] = f"block{index}_sepconv{separable}_bn"
        elif isinstance(module, SeparableConv2d | BatchNorm2d | Conv2d):
            number = int(re.sub(r"\D", "", name))
            if number <= stem:
                layer = f"block1_conv{number}"
            else:
                layer = f"block{blocks + 2}_sepconv{number - stem}"
            names[name] = layer if name.startswith("conv") else f"{layer}_bn"
        elif isinstance(module, Linear):
            names[name] = "predictions"
    return names


def keras_key_map(model: Xception) -> dict[str, tuple[str, str]]:
    """cnnkit state_dict key -> (Keras variable name, transform name); counters left out."""
    layers = keras_layer_names(model)
    modules = dict(model.named_modules())
    mapping = {}
    for key in model.state_dict():
        if key.endswith(OPTIONAL_SUFFIX):
            continue
        owner = max((p for p in layers if key.startswith(p + ".")), key=len, default=None)
        if owner is None:
            raise WeightsError(f"no Keras name for cnnkit weight {key!r}")
        variable = key[len(owner) + 1 :]
        module = modules[owner]
        table = (
            KERAS_SEPARABLE
            if isinstance(module, SeparableConv2d)
            else next(v for t, v in KERAS_VARIABLES.items() if isinstance(module, t))
        )
        theirs, transform = table[variable]
        mapping[key] = (f"{layers[owner]}/{theirs}", transform)
    return mapping


def key_map(model: Module, layout: str) -> dict[str, tuple[str, str]]:
    """cnnkit state_dict key -> (name in a ``layout`` file, transform name)."""
    _check_layout(layout)
    if layout == "cnnkit":
        return {key: (key, "copy") for key in model.state_dict()}
    if layout == "timm":
        _require_xception(model, "timm")
        return {ours: (theirs, "copy") for ours, theirs in timm_key_map(model).items()}
    return keras_key_map(model)


def normalize_keras_names(arrays: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Keep ``layer/variable`` of each name and renumber auto-named layers from conv2d.

    tf.keras' ':0' suffix and leading scopes ("xception/block1_conv1/kernel") are dropped. A
    Keras model built after others in the same session calls its residual convs conv2d_4,
    conv2d_5, ...: they are renumbered in order, so that the first is conv2d.
    """
    out = {}
    for name, value in arrays.items():
        short = "/".join((name[:-2] if name.endswith(":0") else name).split("/")[-2:])
        if short in out:
            raise WeightsError(f"weights file has two arrays named {short!r} (from {name!r})")
        out[short] = value
    renames = {}
    for base in ("conv2d", "batch_normalization"):
        indices = set()
        for name in out:
            match = KERAS_AUTO_NAME.match(name)
            if match and match.group(1) == base:
                indices.add(int(match.group(2) or 0))
        for new, old in enumerate(sorted(indices)):
            renames[(base, old)] = f"{base}_{new}" if new else base
    result = {}
    for name, value in out.items():
        match = KERAS_AUTO_NAME.match(name)
        if match:
            name = renames[(match.group(1), int(match.group(2) or 0))] + match.group(3)
        result[name] = value
    return result


def detect_layout(names) -> str:
    """Guess a file's layout from its names: 'keras' (``layer/variable``), 'timm' (separable convs
    with ``conv1``/``pointwise``) or 'cnnkit' (``depthwise``, or no separable conv at all)."""
    names = list(names)
    if any("/" in n for n in names):
        return "keras"
    if any(".depthwise." in n for n in names):
        return "cnnkit"
    if any(".pointwise." in n for n in names):
        return "timm"
    return "cnnkit"


# ----------------------------------------------------------------------------- conversion


def _apply(array: np.ndarray, transform: str, inverse: bool = False) -> np.ndarray:
    axes = TRANSFORMS[transform][1 if inverse else 0]
    return array if axes is None else np.transpose(array, axes)


def _shape_in_file(shape: tuple[int, ...], transform: str) -> tuple[int, ...]:
    axes = TRANSFORMS[transform][1]
    if axes is None or len(axes) != len(shape):
        return tuple(shape)
    return tuple(shape[a] for a in axes)


def _listed(names: list[str], limit: int = 5) -> str:
    shown = ", ".join(repr(n) for n in names[:limit])
    return shown + (f" and {len(names) - limit} more" if len(names) > limit else "")


def convert_state(
    model: Module,
    arrays: dict[str, np.ndarray],
    layout: str,
    source: str = "weights file",
) -> dict[str, np.ndarray]:
    """Check ``arrays`` (named as in ``layout``) against ``model`` and return its state_dict.

    Raises WeightsError at the first mismatch: a name the model needs and the file lacks, names
    the file has and the model lacks (the first five listed), or an array whose shape differs
    from the model's (both given in the file's layout). Counters (``num_batches_tracked``) may be
    absent; the returned dict then leaves them out and the model keeps its own.
    """
    _check_layout(layout)
    if layout == "keras":
        arrays = normalize_keras_names(arrays)
    mapping = key_map(model, layout)
    targets = model.state_dict()
    hint = ""
    guessed = detect_layout(arrays)
    if guessed != layout:
        hint = f" (its names look like layout {guessed!r})"
    missing = [
        (ours, theirs)
        for ours, (theirs, _) in mapping.items()
        if theirs not in arrays and not ours.endswith(OPTIONAL_SUFFIX)
    ]
    if missing:
        ours, theirs = missing[0]
        transform = mapping[ours][1]
        expected = _shape_in_file(targets[ours].shape, transform)
        more = f" and {len(missing) - 1} more names" if len(missing) > 1 else ""
        raise WeightsError(
            f"{source} (layout {layout!r}) lacks {theirs!r} (shape {expected}, cnnkit "
            f"{ours!r}){more}{hint}"
        )
    known = {theirs for theirs, _ in mapping.values()}
    unknown = [name for name in arrays if name not in known]
    if unknown:
        raise WeightsError(
            f"{source} (layout {layout!r}) has {len(unknown)} names the model does not have: "
            f"{_listed(unknown)}{hint}"
        )
    state = {}
    for ours, (theirs, transform) in mapping.items():
        if theirs not in arrays:
            continue
        array = np.asarray(arrays[theirs])
        expected = _shape_in_file(targets[ours].shape, transform)
        if ours.endswith(OPTIONAL_SUFFIX) and array.size == 1:
            array = array.reshape(expected)  # a counter saved as (1,) by some tools
        if array.shape != expected:
            raise WeightsError(
                f"{source} (layout {layout!r}): {theirs!r} has shape {array.shape}, expected "
                f"{expected} (cnnkit {ours!r} {targets[ours].shape})"
            )
        if array.dtype.kind not in "fiu":
            raise WeightsError(
                f"{source} (layout {layout!r}): {theirs!r} has dtype {array.dtype}, expected "
                "a numeric array"
            )
        state[ours] = np.asarray(_apply(array, transform), order="C")
    return state


def export_state(model: Module, layout: str) -> dict[str, np.ndarray]:
    """``model``'s state_dict named and laid out as in ``layout`` (the inverse of convert_state).

    The Keras layout has no batch-norm counters; they are left out.
    """
    mapping = key_map(model, layout)
    state = model.state_dict()
    return {
        theirs: np.asarray(_apply(state[ours], transform, inverse=True), order="C")
        for ours, (theirs, transform) in mapping.items()
    }


def flavor_mismatch(model: Module, layout: str) -> str | None:
    """A sentence when ``model`` would not reproduce the numbers of ``layout``'s framework.

    Keras computes with batch-norm eps 1e-3 and TensorFlow's 'same' max-pool padding, timm with
    eps 1e-5 and padding 1: an Xception built with another preset gives other outputs.
    """
    if layout not in FLAVORS or not isinstance(model, Xception):
        return None
    preset = FLAVORS[layout]
    eps = {m.eps for m in model.modules() if isinstance(m, BatchNorm2d)}
    padding = preset["pool_padding"]
    padding = padding if isinstance(padding, str) else (padding, padding)
    pools = {m.padding for m in model.modules() if isinstance(m, MaxPool2d)}
    if eps <= {preset["bn_eps"]} and pools <= {padding}:
        return None
    return (
        f"layout {layout!r} weights were computed with batch-norm eps {preset['bn_eps']} and "
        f"max-pool padding {preset['pool_padding']!r}, but the model uses eps "
        f"{sorted(eps)} and padding {sorted(pools, key=str)}; build it with "
        f"flavor={layout!r} to reproduce {layout}'s outputs"
    )
