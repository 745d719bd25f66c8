"""Real CNNs in: torchvision architectures with random weights (batch-norm statistics and affine
parameters randomised), exported by torch.onnx, imported by cnnkit.onnx.load, give
onnxruntime's logits at batch 1 and 4 (float32, rtol 1e-4); an imported ResNet-18 fine-tunes
as torch does (first-step gradients of every parameter, then the losses of three SGD steps)."""

from __future__ import annotations

import numpy as np
import pytest
from onnx_support import (
    import_torchvision_models,
    randomize_batch_norms_,
    run_ort,
    torch_to_onnx,
)

import cnnkit.onnx as ckonnx
from cnnkit.nn import CrossEntropyLoss
from cnnkit.optim import SGD

torch = pytest.importorskip("torch")
pytestmark = pytest.mark.usefixtures("torch_single_thread")
tnn = torch.nn


class TinyUNet(tnn.Module):
    """Two levels of a U-Net (Ronneberger et al., 2015): conv blocks, a max-pool down, a
    transposed convolution up, the skip joined by concatenation, a 1x1 head."""

    def __init__(self, channels: int = 3, width: int = 8, classes: int = 2):
        super().__init__()

        def block(cin, cout):
            return tnn.Sequential(
                tnn.Conv2d(cin, cout, 3, padding=1, bias=False),
                tnn.BatchNorm2d(cout),
                tnn.ReLU(inplace=True),
                tnn.Conv2d(cout, cout, 3, padding=1),
                tnn.ReLU(inplace=True),
            )

        self.down1, self.down2 = block(channels, width), block(width, 2 * width)
        self.pool = tnn.MaxPool2d(2)
        self.bottom = block(2 * width, 4 * width)
        self.up2 = tnn.ConvTranspose2d(4 * width, 2 * width, 2, stride=2)
        self.dec2 = block(4 * width, 2 * width)
        self.up1 = tnn.ConvTranspose2d(2 * width, width, 2, stride=2)
        self.dec1 = block(2 * width, width)
        self.head = tnn.Conv2d(width, classes, 1)

    def forward(self, x):
        d1 = self.down1(x)
        d2 = self.down2(self.pool(d1))
        b = self.bottom(self.pool(d2))
        u2 = self.dec2(torch.cat([self.up2(b), d2], dim=1))
        return self.head(self.dec1(torch.cat([self.up1(u2), d1], dim=1)))


def _vgg11_bn(models):
    """vgg11_bn at 64 x 64: its 7 x 7 adaptive pool is the identity at 224 x 224, the size the
    exporter needs it at; here the features are 2 x 2, so the pool is the identity and the
    first classifier layer takes 512 * 2 * 2 features."""
    model = models.vgg11_bn(num_classes=10)
    model.avgpool = tnn.Identity()
    model.classifier[0] = tnn.Linear(512 * 2 * 2, 4096)
    return model


def build(name):
    models = import_torchvision_models()
    torch.manual_seed(0)
    if name == "unet":
        return TinyUNet()
    if name == "vgg11_bn":
        return _vgg11_bn(models)
    options = {"aux_logits": False, "init_weights": True} if name == "googlenet" else {}
    return getattr(models, name)(**options)


MODELS = [
    "resnet18",
    "mobilenet_v2",
    "mobilenet_v3_small",
    "efficientnet_b0",
    "squeezenet1_1",
    "shufflenet_v2_x0_5",
    "densenet121",
    "mnasnet0_5",
    "googlenet",
    "vgg11_bn",
    "unet",
]


@pytest.mark.parametrize("name", MODELS)
def test_imported_model_gives_onnxruntime_logits(name):
    """Batch 1 and 4 against onnxruntime and torch; then written back by cnnkit.onnx.export
    (shape computations included, batch dynamic), run by onnxruntime at batch 4."""
    torch_model = randomize_batch_norms_(build(name)).eval()
    data = torch_to_onnx(torch_model, (1, 3, 64, 64))
    model = ckonnx.load(data)
    rng = np.random.default_rng(0)
    for batch in (1, 4):
        x = rng.standard_normal((batch, 3, 64, 64)).astype(np.float32)
        expected = run_ort(data, x)[0]
        got = model(x)
        assert got.shape == expected.shape and got.dtype == np.float32
        scale = np.abs(expected).max()
        np.testing.assert_allclose(got, expected, rtol=1e-4, atol=1e-5 * scale)
        with torch.no_grad():
            reference = torch_model(torch.from_numpy(x)).numpy()
        np.testing.assert_allclose(got, reference, rtol=1e-4, atol=1e-5 * scale)
    written = ckonnx.export(model, None, (3, 64, 64)).SerializeToString()
    np.testing.assert_allclose(run_ort(written, x)[0], got, rtol=1e-4, atol=1e-5 * scale)
    assert set(ckonnx.load(written).state_dict()) == set(model.state_dict())


def test_imported_resnet18_fine_tunes_as_torch():
    """Eval-mode fine-tuning (frozen batch-norm statistics): the first step's gradient of every
    parameter equals torch's (names from the file: torch's state_dict keys), and three SGD
    steps with momentum change the loss as they do in torch."""
    torch_model = randomize_batch_norms_(build("resnet18")).eval()
    data = torch_to_onnx(torch_model, (1, 3, 32, 32), do_constant_folding=False)
    model = ckonnx.load(data)
    params = dict(model.named_parameters())
    assert set(params) == {n for n, _ in torch_model.named_parameters()}
    rng = np.random.default_rng(1)
    x = rng.standard_normal((4, 3, 32, 32)).astype(np.float32)
    labels = rng.integers(0, 1000, 4)
    loss_fn = CrossEntropyLoss()
    opt = SGD(model.parameters(), lr=0.01, momentum=0.9)
    torch_opt = torch.optim.SGD(torch_model.parameters(), lr=0.01, momentum=0.9)
    xt, yt = torch.from_numpy(x), torch.from_numpy(labels)
    for step in range(3):
        loss = loss_fn(model(x), labels)
        model.zero_grad()
        model.backward(loss_fn.backward())
        torch_opt.zero_grad()
        torch_loss = tnn.functional.cross_entropy(torch_model(xt), yt)
        torch_loss.backward()
        np.testing.assert_allclose(loss, torch_loss.item(), rtol=1e-4)
        if step == 0:
            for name, p in torch_model.named_parameters():
                scale = p.grad.abs().max().item()
                np.testing.assert_allclose(
                    params[name].grad, p.grad.numpy(), rtol=1e-4, atol=1e-4 * scale, err_msg=name
                )
        opt.step()
        torch_opt.step()
    written = ckonnx.export(model, None, (3, 32, 32)).SerializeToString()
    model.eval()
    np.testing.assert_allclose(run_ort(written, x)[0], model(x), rtol=1e-4, atol=1e-4)


class TorchLayers(tnn.Module):
    """The torch layers outside the torchvision list, each once, as torch.onnx writes them:
    norms within a sample, resampling (by factor, by size, to another tensor's size), pixel
    shuffles, padding, modern activations, chunks, views, permutes, means, matmuls."""

    def __init__(self):
        super().__init__()
        self.conv = tnn.Conv2d(3, 8, 3, padding=1)
        self.gn = tnn.GroupNorm(2, 8)
        self.inorm = tnn.InstanceNorm2d(8, affine=True)
        self.ln = tnn.LayerNorm([8, 8])
        self.act = tnn.Sequential(tnn.GELU(), tnn.SiLU(), tnn.Hardtanh(-2, 2), tnn.ELU(0.5))
        self.prelu = tnn.PReLU(8)
        self.up = tnn.Upsample(scale_factor=2, mode="nearest")
        self.bilinear = tnn.Upsample(scale_factor=0.5, mode="bilinear")
        self.pad = tnn.ReflectionPad2d((1, 0, 0, 1))
        self.shuffle = tnn.PixelShuffle(2)
        self.deconv = tnn.ConvTranspose2d(2, 4, 3, stride=2, padding=1, output_padding=1)
        self.dropout = tnn.Dropout2d(0.3)
        self.fc = tnn.Linear(4, 5)

    def forward(self, x):
        y = self.prelu(self.ln(self.inorm(self.gn(self.conv(x)))))
        y = self.act(y)
        a, b = torch.chunk(y, 2, dim=1)
        y = torch.cat([b, a * torch.sigmoid(b)], dim=1)
        y = self.bilinear(self.up(y))
        z = self.pad(y)
        z = tnn.functional.interpolate(z, size=y.shape[2:], mode="bilinear", align_corners=True)
        z = self.deconv(self.shuffle(self.dropout(z)))
        n, c = z.shape[:2]
        z = z.view(n, c, -1).permute(0, 2, 1)
        return tnn.functional.softplus(self.fc(z)).mean(dim=1)


@pytest.mark.parametrize("opset", [13, 17])
def test_torch_layers_import_and_backward(opset):
    torch_model = TorchLayers().eval()
    data = torch_to_onnx(torch_model, (1, 3, 8, 8), opset_version=opset)
    model = ckonnx.load(data, dtype=np.float64)
    x = np.random.default_rng(0).standard_normal((3, 3, 8, 8))
    expected = run_ort(data, x.astype(np.float32))[0]
    np.testing.assert_allclose(model(x), expected, rtol=1e-4, atol=1e-5)
    xt = torch.from_numpy(x).requires_grad_()
    torch.set_default_dtype(torch.float64)
    try:
        double = TorchLayers().double().eval()
    finally:
        torch.set_default_dtype(torch.float32)
    double.load_state_dict(torch_model.state_dict())
    out = double(xt)
    dout = np.random.default_rng(1).standard_normal(out.shape)
    out.backward(torch.from_numpy(dout))
    np.testing.assert_allclose(model(x), out.detach().numpy(), rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(model.backward(dout), xt.grad.numpy(), rtol=1e-8, atol=1e-10)
