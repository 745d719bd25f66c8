"""Weight import (cnnkit.weights, cnnkit.io.load_weights): timm and Keras layouts, PyTorch parity,
every error, ImageNet class names and `cnnkit predict --weights`."""

from __future__ import annotations

import json
import sys
import warnings

import numpy as np
import pytest
import torch
from PIL import Image

# The PyTorch re-implementation of Xception with timm's names (tests/ is on sys.path under pytest).
from test_models import TORCH_POOLS, TorchSeparable, TorchXception, set_batchnorm_state

import cnnkit.models as zoo
from cnnkit import weights
from cnnkit.cli import main
from cnnkit.imagenet import ImageError, class_names, preprocess
from cnnkit.io import load_pretrained, load_weights, save_checkpoint, save_weights
from cnnkit.weights import WeightsError

safetensors_numpy = pytest.importorskip("safetensors.numpy")

WIDTH, MIDDLE, CLASSES, SIZE = 1 / 16, 1, 5, 35
SUFFIXES = [".npz", ".safetensors"]


def tiny(flavor="keras", seed=0, **options):
    options = {"width": WIDTH, "middle_blocks": MIDDLE, "num_classes": CLASSES, **options}
    return zoo.xception(in_channels=3, flavor=flavor, seed=seed, **options)


def random_model(flavor="keras", seed=0, **options):
    """A tiny Xception with non-trivial batch-norm statistics, in eval mode."""
    model = tiny(flavor, seed, **options)
    set_batchnorm_state(model, np.random.default_rng(seed + 100))
    return model.eval()


def images(n=2, size=SIZE, seed=3):
    return np.random.default_rng(seed).standard_normal((n, 3, size, size)).astype(np.float32)


def write(path, arrays):
    """Write a dict of arrays as .npz or .safetensors, the way another framework's tool would."""
    arrays = {k: np.asarray(v, order="C") for k, v in arrays.items()}
    if path.suffix == ".npz":
        np.savez(path, **arrays)
    else:
        safetensors_numpy.save_file(arrays, str(path))
    return path


# ----------------------------------------------------------------------------- Keras names


def keras_xception_names(middle=8):
    """The variable names of keras.applications.Xception, written out from Keras' source."""
    names = []

    def bn(layer):
        names.extend(f"{layer}/{v}" for v in ("gamma", "beta", "moving_mean", "moving_variance"))

    def sep(layer):
        names.extend([f"{layer}/depthwise_kernel", f"{layer}/pointwise_kernel"])
        bn(f"{layer}_bn")

    for i in (1, 2):
        names.append(f"block1_conv{i}/kernel")
        bn(f"block1_conv{i}_bn")
    residual = ["conv2d", "conv2d_1", "conv2d_2", "conv2d_3"]
    norms = ["batch_normalization", "batch_normalization_1", "batch_normalization_2"]
    norms.append("batch_normalization_3")
    for block in (2, 3, 4):  # entry flow
        names.append(f"{residual.pop(0)}/kernel")
        bn(norms.pop(0))
        sep(f"block{block}_sepconv1")
        sep(f"block{block}_sepconv2")
    for block in range(5, 5 + middle):  # middle flow
        for k in (1, 2, 3):
            sep(f"block{block}_sepconv{k}")
    names.append(f"{residual.pop(0)}/kernel")  # exit flow
    bn(norms.pop(0))
    sep(f"block{5 + middle}_sepconv1")
    sep(f"block{5 + middle}_sepconv2")
    sep(f"block{6 + middle}_sepconv1")
    sep(f"block{6 + middle}_sepconv2")
    names += ["predictions/kernel", "predictions/bias"]
    return names


def test_keras_names_of_the_full_model_are_keras_applications_xception():
    model = zoo.xception(num_classes=1000, in_channels=3)
    exported = weights.export_state(model, "keras")
    assert sorted(exported) == sorted(keras_xception_names(8))
    assert len(exported) == 236  # len(keras.applications.Xception().weights)
    # Shapes as Keras stores them (channels last).
    assert exported["block1_conv1/kernel"].shape == (3, 3, 3, 32)
    assert exported["conv2d/kernel"].shape == (1, 1, 64, 128)
    assert exported["block2_sepconv1/depthwise_kernel"].shape == (3, 3, 64, 1)
    assert exported["block2_sepconv1/pointwise_kernel"].shape == (1, 1, 64, 128)
    assert exported["block13_sepconv2/pointwise_kernel"].shape == (1, 1, 728, 1024)
    assert exported["conv2d_3/kernel"].shape == (1, 1, 728, 1024)
    assert exported["block14_sepconv2_bn/moving_variance"].shape == (2048,)
    assert exported["predictions/kernel"].shape == (2048, 1000)


def test_keras_names_of_a_tiny_model():
    assert sorted(weights.export_state(tiny(), "keras")) == sorted(keras_xception_names(MIDDLE))


def torch_twin(flavor, seed=0):
    """TorchXception (timm names) with random weights and batch-norm statistics, eval mode."""
    torch.manual_seed(seed)
    eps, pool = TORCH_POOLS[flavor]
    twin = TorchXception(WIDTH, MIDDLE, CLASSES, 3, eps, pool)
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for module in twin.modules():
            if isinstance(module, torch.nn.BatchNorm2d):
                c = module.num_features
                module.weight.copy_(torch.rand(c, generator=generator) + 0.5)
                module.bias.copy_(torch.rand(c, generator=generator) * 0.6 - 0.3)
                module.running_mean.copy_(torch.rand(c, generator=generator) * 0.4 - 0.2)
                module.running_var.copy_(torch.rand(c, generator=generator) * 1.5 + 0.5)
    return twin.eval()


def torch_to_keras(twin, tf_suffix=False, first_auto=0, scope=""):
    """Keras-layout arrays from the PyTorch twin, following keras.applications.Xception's code:
    conv kernels (kH, kW, C_in, C_out), depthwise (kH, kW, C, 1), dense (in, out)."""
    out = {}
    end = ":0" if tf_suffix else ""

    def put(name, tensor):
        out[scope + name + end] = tensor.detach().numpy()

    def conv(layer, m):
        put(f"{layer}/kernel", m.weight.permute(2, 3, 1, 0))

    def bn(layer, m):
        for ours, theirs in [("weight", "gamma"), ("bias", "beta")]:
            put(f"{layer}/{theirs}", getattr(m, ours))
        put(f"{layer}/moving_mean", m.running_mean)
        put(f"{layer}/moving_variance", m.running_var)

    def sep(layer, m):
        put(f"{layer}/depthwise_kernel", m.conv1.weight.permute(2, 3, 0, 1))
        put(f"{layer}/pointwise_kernel", m.pointwise.weight.permute(2, 3, 1, 0))

    def auto(base, index):
        return base if index == 0 else f"{base}_{index}"

    conv("block1_conv1", twin.conv1)
    bn("block1_conv1_bn", twin.bn1)
    conv("block1_conv2", twin.conv2)
    bn("block1_conv2_bn", twin.bn2)
    blocks = [m for name, m in twin.named_children() if name.startswith("block")]
    residual = first_auto
    for keras_block, block in enumerate(blocks, start=2):
        if block.skip is not None:
            conv(auto("conv2d", residual), block.skip)
            bn(auto("batch_normalization", residual), block.skipbn)
            residual += 1
        separables = [m for m in block.rep if isinstance(m, TorchSeparable)]
        norms = [m for m in block.rep if isinstance(m, torch.nn.BatchNorm2d)]
        for k, (s, b) in enumerate(zip(separables, norms), start=1):
            sep(f"block{keras_block}_sepconv{k}", s)
            bn(f"block{keras_block}_sepconv{k}_bn", b)
    last = len(blocks) + 2
    sep(f"block{last}_sepconv1", twin.conv3)
    bn(f"block{last}_sepconv1_bn", twin.bn3)
    sep(f"block{last}_sepconv2", twin.conv4)
    bn(f"block{last}_sepconv2_bn", twin.bn4)
    put("predictions/kernel", twin.fc.weight.T)
    put("predictions/bias", twin.fc.bias)
    return out


def torch_to_timm(twin, counters=True):
    return {
        k: v.numpy()
        for k, v in twin.state_dict().items()
        if counters or not k.endswith("num_batches_tracked")
    }


def torch_logits(twin, x):
    with torch.no_grad():
        return twin(torch.from_numpy(x)).numpy()


# ----------------------------------------------------------------------------- round trips


@pytest.mark.parametrize("suffix", SUFFIXES)
@pytest.mark.parametrize(
    "layout, flavor", [("cnnkit", "keras"), ("timm", "timm"), ("keras", "keras"), ("timm", "keras")]
)
def test_export_then_load_gives_equal_outputs(tmp_path, layout, flavor, suffix, recwarn):
    source = random_model(flavor, seed=1)
    path = save_weights(source, tmp_path / f"w{suffix}", layout)
    fresh = tiny(flavor, seed=2).eval()
    x = images()
    assert not np.array_equal(fresh(x), source(x))
    assert load_weights(fresh, path, layout) == layout
    np.testing.assert_array_equal(fresh(x), source(x))
    for key, value in source.state_dict().items():
        if not (layout == "keras" and key.endswith("num_batches_tracked")):
            np.testing.assert_array_equal(fresh.state_dict()[key], value, err_msg=key)


@pytest.mark.parametrize("suffix", SUFFIXES)
def test_timm_layout_matches_pytorch(tmp_path, suffix):
    twin = torch_twin("timm", seed=4)
    path = write(tmp_path / f"timm{suffix}", torch_to_timm(twin))
    model = tiny("timm", seed=5)
    load_weights(model, path, "timm")
    x = images(3, seed=6)
    theirs = torch_logits(twin, x)
    assert np.abs(theirs).max() > 0.1
    np.testing.assert_allclose(model.eval()(x), theirs, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("suffix", SUFFIXES)
def test_keras_layout_matches_a_pytorch_model_with_keras_numerics(tmp_path, suffix):
    """The twin computes as Keras does: eps 1e-3, TensorFlow 'same' max-pools."""
    twin = torch_twin("keras", seed=7)
    path = write(tmp_path / f"keras{suffix}", torch_to_keras(twin))
    model = tiny("keras", seed=8)
    load_weights(model, path, "keras")
    x = images(3, seed=9)  # 35 px: the 2 -> 1 pool pads after, TensorFlow's odd case
    theirs = torch_logits(twin, x)
    assert np.abs(theirs).max() > 0.1
    np.testing.assert_allclose(model.eval()(x), theirs, rtol=1e-4, atol=1e-5)


def test_keras_names_from_tf_keras_and_from_a_later_session(tmp_path):
    """tf.keras names end in ':0' (and may carry the model's scope); a second model in a session
    gets conv2d_4 ... conv2d_7."""
    twin = torch_twin("keras", seed=10)
    arrays = torch_to_keras(twin, tf_suffix=True, first_auto=4, scope="xception/")
    assert "xception/conv2d_4/kernel:0" in arrays
    assert "xception/batch_normalization_7/gamma:0" in arrays
    model = tiny("keras", seed=11)
    load_weights(model, write(tmp_path / "w.npz", arrays), "keras")
    x = images(seed=12)
    np.testing.assert_allclose(model.eval()(x), torch_logits(twin, x), rtol=1e-4, atol=1e-5)


def nhwc_conv(x, kernel, padding):
    """TensorFlow's conv2d by definition: y[n, i, j, o] = sum K[u, v, c, o] x[n, i+u, j+v, c]."""
    kh, kw = kernel.shape[:2]
    x = np.pad(x, ((0, 0), (padding, padding), (padding, padding), (0, 0)))
    windows = np.lib.stride_tricks.sliding_window_view(x, (kh, kw), axis=(1, 2))
    return np.einsum("nijcuv,uvco->nijo", windows, kernel)


def test_keras_kernels_follow_tensorflow_semantics(tmp_path):
    """Each converted kernel computes what TensorFlow computes with the stored one."""
    stored = weights.export_state(random_model(seed=13), "keras")
    model = tiny(seed=14)
    load_weights(model, write(tmp_path / "w.npz", stored), "keras")
    x = images(seed=15)
    nhwc = x.transpose(0, 2, 3, 1)
    # Stem conv (valid, stride 2).
    theirs = nhwc_conv(nhwc, stored["block1_conv1/kernel"], 0)[:, ::2, ::2]
    np.testing.assert_allclose(model.conv1(x), theirs.transpose(0, 3, 1, 2), rtol=1e-5, atol=1e-5)
    # Depthwise ('same'): channel c uses K[:, :, c, 0] only.
    features = np.random.default_rng(16).standard_normal((2, 4, 6, 6)).astype(np.float32)
    depthwise = stored["block2_sepconv1/depthwise_kernel"]
    per_channel = [
        nhwc_conv(features[:, c, :, :, None], depthwise[:, :, c : c + 1, :], 1)[..., 0]
        for c in range(depthwise.shape[2])
    ]
    np.testing.assert_allclose(
        model.block1.rep[0].depthwise(features), np.stack(per_channel, 1), rtol=1e-5, atol=1e-5
    )
    # Dense: y = x @ kernel + bias.
    pooled = np.random.default_rng(17).standard_normal((2, model.fc.in_features)).astype(np.float32)
    np.testing.assert_allclose(
        model.fc(pooled),
        pooled @ stored["predictions/kernel"] + stored["predictions/bias"],
        rtol=1e-5,
        atol=1e-6,
    )


def test_timm_counters_are_optional(tmp_path):
    twin = torch_twin("timm", seed=18)
    model = tiny("timm", seed=19)
    load_weights(model, write(tmp_path / "w.npz", torch_to_timm(twin, counters=False)), "timm")
    x = images(seed=20)
    np.testing.assert_allclose(model.eval()(x), torch_logits(twin, x), rtol=1e-4, atol=1e-5)
    # Some tools store the counters as shape (1,): accepted, they only count batches.
    arrays = {
        k: v.reshape(1) if k.endswith("num_batches_tracked") else v
        for k, v in torch_to_timm(twin).items()
    }
    load_weights(tiny("timm"), write(tmp_path / "w.safetensors", arrays), "timm")


def test_cnnkit_layout_reads_checkpoints_and_auto_detects(tmp_path):
    source = random_model(seed=21)
    checkpoint = save_checkpoint(tmp_path / "run.npz", source)
    x = images(seed=22)
    for layout in ("cnnkit", "auto"):
        fresh = tiny(seed=23).eval()
        assert load_weights(fresh, checkpoint, layout) == "cnnkit"
        np.testing.assert_array_equal(fresh(x), source(x))
    timm = save_weights(source, tmp_path / "timm.safetensors", "timm")
    assert weights.detect_layout(weights.read_names(timm)) == "timm"
    with pytest.warns(UserWarning, match="flavor='timm'"):  # a keras-flavor model
        assert load_weights(tiny(seed=24), timm, "auto") == "timm"
    keras = save_weights(source, tmp_path / "keras.npz", "keras")
    assert weights.detect_layout(weights.read_names(keras)) == "keras"
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert load_weights(tiny(seed=24), keras, "auto") == "keras"


def test_flavor_mismatch_warns_with_the_flavor_to_use(tmp_path):
    path = save_weights(random_model("keras"), tmp_path / "w.npz", "keras")
    with pytest.warns(UserWarning, match="flavor='keras'"):
        load_weights(tiny("timm"), path, "keras")
    assert weights.flavor_mismatch(tiny("keras"), "keras") is None
    assert weights.flavor_mismatch(tiny("keras", bn_eps=1e-5), "keras") is not None
    assert weights.flavor_mismatch(tiny("timm"), "timm") is None


def test_load_pretrained_picks_the_files_flavor(tmp_path):
    source = random_model("timm", seed=25)
    path = save_weights(source, tmp_path / "w.safetensors", "timm")
    model, layout = load_pretrained(
        "xception", path, width=WIDTH, middle_blocks=MIDDLE, num_classes=CLASSES
    )
    assert layout == "timm" and model.flavor == "timm" and not model.training
    np.testing.assert_array_equal(model(images()), source(images()))


# ----------------------------------------------------------------------------- errors


@pytest.fixture
def keras_file(tmp_path):
    """A valid Keras-layout .npz for tiny('keras') and the arrays in it."""
    arrays = weights.export_state(random_model(seed=30), "keras")
    return write(tmp_path / "keras.npz", arrays), arrays


def assert_untouched(model, before):
    for key, value in before.items():
        np.testing.assert_array_equal(model.state_dict()[key], value, err_msg=key)


def test_missing_name_is_reported_with_its_shape(tmp_path, keras_file):
    _, arrays = keras_file
    del arrays["block2_sepconv1/pointwise_kernel"]
    model = tiny(seed=31)
    before = model.state_dict()
    with pytest.raises(
        WeightsError,
        match=r"lacks 'block2_sepconv1/pointwise_kernel' \(shape \(1, 1, 4, 8\), "
        r"cnnkit 'block1.rep.0.pointwise.weight'\)",
    ):
        load_weights(model, write(tmp_path / "w.npz", arrays), "keras")
    assert_untouched(model, before)


def test_unknown_names_are_listed(tmp_path, keras_file):
    _, arrays = keras_file
    for i in range(7):
        arrays[f"extra{i}/kernel"] = np.zeros(3, np.float32)
    with pytest.raises(
        WeightsError, match=r"has 7 names the model does not have: 'extra0/kernel', .* and 2 more"
    ):
        load_weights(tiny(), write(tmp_path / "w.npz", arrays), "keras")


def test_wrong_shape_names_found_and_expected(tmp_path, keras_file):
    _, arrays = keras_file
    arrays["predictions/kernel"] = np.zeros((CLASSES, 128), np.float32)  # PyTorch's order
    model = tiny(seed=32)
    before = model.state_dict()
    with pytest.raises(
        WeightsError,
        match=r"'predictions/kernel' has shape \(5, 128\), expected \(128, 5\) "
        r"\(cnnkit 'fc.weight' \(5, 128\)\)",
    ):
        load_weights(model, write(tmp_path / "w.npz", arrays), "keras")
    assert_untouched(model, before)


def test_wrong_shape_in_timm_layout(tmp_path):
    arrays = weights.export_state(tiny("timm"), "timm")
    arrays["block1.rep.0.conv1.weight"] = np.zeros((4, 1, 5, 5), np.float32)
    with pytest.raises(
        WeightsError,
        match=r"'block1.rep.0.conv1.weight' has shape \(4, 1, 5, 5\), expected \(4, 1, 3, 3\)",
    ):
        load_weights(tiny("timm"), write(tmp_path / "w.safetensors", arrays), "timm")


def test_a_file_in_another_layout_gets_a_hint(tmp_path):
    path = save_weights(tiny("timm"), tmp_path / "w.npz", "timm")
    with pytest.raises(WeightsError, match=r"lacks 'block1_conv1/kernel'.*look like layout 'timm'"):
        load_weights(tiny(), path, "keras")


def test_duplicate_keras_names(tmp_path, keras_file):
    _, arrays = keras_file
    arrays["predictions/bias:0"] = arrays["predictions/bias"]
    with pytest.raises(WeightsError, match=r"two arrays named 'predictions/bias'"):
        load_weights(tiny(), write(tmp_path / "w.npz", arrays), "keras")


def test_non_numeric_array(tmp_path, keras_file):
    _, arrays = keras_file
    arrays["predictions/bias"] = np.zeros(CLASSES, bool)
    with pytest.raises(WeightsError, match=r"'predictions/bias' has dtype bool"):
        load_weights(tiny(), write(tmp_path / "w.npz", arrays), "keras")


def test_bad_layout_name(keras_file):
    with pytest.raises(WeightsError, match=r"unknown weights layout 'pytorch'; choose from"):
        load_weights(tiny(), keras_file[0], "pytorch")
    with pytest.raises(WeightsError, match=r"unknown weights layout 'tf'"):
        weights.convert_state(tiny(), keras_file[1], "tf")
    with pytest.raises(WeightsError, match=r"unknown weights layout 'pytorch'"):
        load_pretrained("xception", keras_file[0], "pytorch")


def test_missing_file_and_bad_suffix(tmp_path):
    with pytest.raises(WeightsError, match=r"weights file .*nothing.safetensors does not exist"):
        load_weights(tiny(), tmp_path / "nothing.safetensors", "timm")
    with pytest.raises(WeightsError, match=r"nothing.npz does not exist"):
        load_weights(tiny(), tmp_path / "nothing.npz", "keras")
    (tmp_path / "model.pth").write_bytes(b"\x80\x02")
    with pytest.raises(WeightsError, match=r"suffix '.pth'; expected .safetensors or .npz"):
        load_weights(tiny(), tmp_path / "model.pth", "timm")
    with pytest.raises(WeightsError, match=r"expected a .safetensors or .npz suffix"):
        save_weights(tiny(), tmp_path / "model.h5")


@pytest.mark.parametrize("suffix, kind", [(".npz", "npz"), (".safetensors", "safetensors")])
def test_corrupt_files(tmp_path, suffix, kind):
    path = tmp_path / f"broken{suffix}"
    path.write_bytes(b"not a weights file at all")
    with pytest.raises(WeightsError, match=rf"is not a readable .{kind} file"):
        load_weights(tiny(), path, "keras")


def test_pickled_npz_is_refused(tmp_path):
    path = tmp_path / "pickled.npz"
    np.savez(path, **{"predictions/bias": np.array([object()], dtype=object)})
    with pytest.raises(WeightsError, match="not a readable .npz file"):
        load_weights(tiny(), path, "keras")


def test_safetensors_not_installed(tmp_path, monkeypatch, keras_file):
    path = save_weights(tiny(), tmp_path / "w.safetensors", "keras")
    monkeypatch.setitem(sys.modules, "safetensors", None)
    monkeypatch.setitem(sys.modules, "safetensors.numpy", None)
    with pytest.raises(WeightsError, match=r"pip install safetensors \(or pip install"):
        load_weights(tiny(), path, "keras")
    with pytest.raises(WeightsError, match=r"interchange"):
        save_weights(tiny(), tmp_path / "again.safetensors", "keras")
    load_weights(tiny(), keras_file[0], "keras")  # .npz needs no safetensors


def test_other_framework_layouts_need_an_xception(tmp_path):
    lenet = zoo.lenet5()
    with pytest.raises(WeightsError, match=r"layout is defined for Xception only, got LeNet5"):
        weights.export_state(lenet, "keras")
    path = save_weights(lenet, tmp_path / "lenet.npz")
    with pytest.raises(WeightsError, match=r"'timm' layout is defined for Xception only"):
        load_weights(zoo.lenet5(), path, "timm")
    load_weights(zoo.lenet5(), path, "cnnkit")


def test_checkpoint_with_another_layout(tmp_path):
    path = save_checkpoint(tmp_path / "run.npz", tiny())
    with pytest.raises(WeightsError, match=r"is a cnnkit checkpoint; load it with layout 'cnnkit'"):
        load_weights(tiny(), path, "keras")


def test_bad_model_options_in_load_pretrained(keras_file):
    with pytest.raises(WeightsError, match=r"cannot build model 'xception'.*depth"):
        load_pretrained("xception", keras_file[0], depth=3)


# ----------------------------------------------------------------------------- ImageNet


def test_imagenet_class_names():
    names = class_names()
    assert len(names) == 1000 and len(set(names)) == 1000
    assert all(isinstance(n, str) and n.strip() == n and n for n in names)
    assert names[0] == "tench" and names[1] == "goldfish" and names[281] == "tabby"
    assert names[999] == "toilet tissue"
    assert names[134] == "crane (bird)" and names[517] == "crane (machine)"


def test_preprocess_resizes_the_shorter_side_crops_the_centre_and_scales(tmp_path):
    # 60 x 20 (W x H): black | white | black thirds; the centre crop is the white third.
    pixels = np.zeros((20, 60, 3), np.uint8)
    pixels[:, 20:40] = 255
    Image.fromarray(pixels).save(tmp_path / "wide.png")
    x = preprocess(tmp_path / "wide.png", (10, 10))
    assert x.shape == (3, 10, 10) and x.dtype == np.float32
    np.testing.assert_allclose(x[:, :, 1:-1], 1.0)
    Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(tmp_path / "black.png")
    np.testing.assert_array_equal(preprocess(tmp_path / "black.png", (5, 7)), -np.ones((3, 5, 7)))
    assert preprocess(tmp_path / "black.png", (4, 4), channels=1).shape == (1, 4, 4)


def test_preprocess_errors(tmp_path):
    bad = tmp_path / "bad.jpg"
    bad.write_text("not an image")
    with pytest.raises(ImageError, match=r"cannot read image .*bad.jpg"):
        preprocess(bad)
    with pytest.raises(ImageError, match=r"1 or 3 channels, got 4"):
        preprocess(bad, channels=4)


# ----------------------------------------------------------------------------- CLI


CLI_OPTIONS = json.dumps({"width": WIDTH, "middle_blocks": MIDDLE, "input_size": SIZE})


@pytest.fixture
def cli_files(tmp_path):
    """Keras-layout weights of a tiny 1000-class Xception, and a photo-sized image."""
    model = random_model("keras", seed=40, num_classes=1000, input_size=SIZE)
    path = save_weights(model, tmp_path / "xception.safetensors", "keras")
    rng = np.random.default_rng(41)
    image = tmp_path / "cat.jpg"
    Image.fromarray(rng.integers(0, 256, (48, 64, 3), dtype=np.uint8)).save(image)
    return model, path, image


def test_cli_predict_with_weights_prints_top5(cli_files, capsys):
    model, path, image = cli_files
    status = main(
        ["predict", "--model", "xception", "--weights", str(path), "--model-options", CLI_OPTIONS]
        + [str(image)]
    )
    out = capsys.readouterr().out.strip().splitlines()
    assert status == 0 and len(out) == 1
    assert out[0].startswith(f"{image}: ")
    ranked = out[0][len(f"{image}: ") :].split(", ")
    assert len(ranked) == 5
    logits = model(preprocess(image, (SIZE, SIZE))[None]).astype(np.float64)[0]
    probabilities = np.exp(logits - logits.max())
    probabilities /= probabilities.sum()
    best = np.argsort(-probabilities, kind="stable")[:5]
    names = class_names()
    assert ranked == [f"{names[i]} {probabilities[i]:.3f}" for i in best]


def test_cli_predict_with_explicit_layout_flavor_and_top_k(cli_files, capsys):
    _, path, image = cli_files
    args = ["predict", "--weights", str(path), "--layout", "keras", "--flavor", "keras"]
    status = main(args + ["--model-options", CLI_OPTIONS, "--top-k", "2", str(image)])
    assert status == 0
    assert len(capsys.readouterr().out.split(", ")) == 2


def assert_one_line_error(capsys, status, *fragments):
    err = capsys.readouterr().err
    assert status == 2
    lines = err.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in err, err
    for fragment in fragments:
        assert fragment in lines[0], lines[0]


def test_cli_predict_weights_errors(cli_files, tmp_path, capsys):
    _, path, image = cli_files
    base = ["predict", "--model-options", CLI_OPTIONS]
    status = main(base + ["--weights", str(tmp_path / "none.safetensors"), str(image)])
    assert_one_line_error(
        capsys, status, "cnnkit predict: error:", "none.safetensors does not exist"
    )
    status = main(base + ["--weights", str(path), "--layout", "timm", str(image)])
    assert_one_line_error(capsys, status, "lacks 'conv1.weight'", "look like layout 'keras'")
    bad = tmp_path / "bad.jpg"
    bad.write_text("not an image")
    status = main(base + ["--weights", str(path), str(bad)])
    assert_one_line_error(capsys, status, "cannot read image")
    status = main(
        ["predict", "--weights", str(path), "--model-options", '{"depth": 2}', str(image)]
    )
    assert_one_line_error(capsys, status, "cannot build model 'xception'")
    status = main(["predict", "--checkpoint", str(path), "--model", "xception", str(image)])
    assert_one_line_error(capsys, status, "go with --weights")


@pytest.mark.parametrize(
    "args, message",
    [
        (["--layout", "pytorch"], "invalid choice: 'pytorch'"),
        (["--model-options", "width=0.5"], "expected a JSON object"),
        (["--checkpoint", "c.npz"], "not allowed with argument"),
    ],
)
def test_cli_predict_weights_argument_errors(cli_files, capsys, args, message):
    _, path, image = cli_files
    with pytest.raises(SystemExit) as exit_info:
        main(["predict", "--weights", str(path), *args, str(image)])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and message in err[0], err
