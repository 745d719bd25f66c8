"""PyTorch's own sample inputs for its modules (``module_db``), run through cnnkit in float64.

For every in-scope torch.nn module, torch's test suite builds sample constructor arguments and
inputs (torch.testing._internal.common_modules). Each sample builds the torch module and the
cnnkit module of the same name with the same arguments, copies torch's state_dict into cnnkit,
and compares the output, dL/d(first input) for a random upstream gradient, every parameter
gradient and every buffer afterwards, in training and in eval mode.
"""

from __future__ import annotations

import inspect
import os

import numpy as np
import pytest

from cnnkit import nn

torch = pytest.importorskip("torch")
common_modules = pytest.importorskip("torch.testing._internal.common_modules")

IN_SCOPE = """
    AdaptiveAvgPool2d AdaptiveMaxPool2d AvgPool2d BCEWithLogitsLoss BatchNorm1d BatchNorm2d
    CircularPad2d ConstantPad2d Conv1d Conv2d ConvTranspose2d CrossEntropyLoss ELU GELU
    GroupNorm Hardswish Hardtanh HuberLoss InstanceNorm2d L1Loss LayerNorm LeakyReLU Linear
    LogSoftmax MSELoss MaxPool2d Mish NLLLoss PReLU ReLU ReLU6 ReflectionPad2d ReplicationPad2d
    SiLU Sigmoid SmoothL1Loss Softmax Softplus Tanh ZeroPad2d
""".split()
"""The torch.nn modules whose every module_db sample cnnkit runs; grows as layers land.

``CNNKIT_MODULE_DB=Name,Name`` runs other modules' samples instead (while building them).
"""
if os.environ.get("CNNKIT_MODULE_DB"):
    IN_SCOPE = os.environ["CNNKIT_MODULE_DB"].split(",")


def _to_numpy(value):
    if isinstance(value, torch.Tensor):
        return value.detach().numpy().copy()
    if isinstance(value, tuple | list):
        return type(value)(_to_numpy(v) for v in value)
    return value


def _samples():
    cases = []
    for info in common_modules.module_db:
        name = info.module_cls.__name__
        if name not in IN_SCOPE:
            continue
        for training in (True, False) if info.train_and_eval_differ else (True,):
            samples = info.module_inputs_func(
                info, device="cpu", dtype=torch.float64, requires_grad=True, training=training
            )
            for index, sample in enumerate(samples):
                mode = "train" if training else "eval"
                desc = sample.desc or "default"
                cases.append(
                    pytest.param(info, sample, training, id=f"{name}-{mode}-{index}-{desc}")
                )
    return cases


def _build_cnnkit(name: str, args, kwargs):
    cls = getattr(nn, name)
    kwargs = dict(_to_numpy(kwargs))
    if "dtype" in inspect.signature(cls).parameters:
        kwargs["dtype"] = np.float64
    return cls(*_to_numpy(args), **kwargs)


def _first_array(output):
    return output[0] if isinstance(output, tuple | list) else output


def _is_loss(module) -> bool:
    return isinstance(module, torch.nn.modules.loss._Loss)


@pytest.mark.parametrize(("info", "sample", "training"), _samples())
def test_module_db_sample_equals_torch(info, sample, training, torch_single_thread):
    torch.manual_seed(0)
    name = info.module_cls.__name__
    args, kwargs = sample.constructor_input.args, sample.constructor_input.kwargs
    reference = info.module_cls(*args, **kwargs).double().train(training)
    ours = _build_cnnkit(name, args, kwargs)
    if not _is_loss(reference):
        ours.train(training)
        ours.load_state_dict(_to_numpy(dict(reference.state_dict())))

    forward_args = list(sample.forward_input.args)
    forward_kwargs = dict(sample.forward_input.kwargs)
    if "input" in forward_kwargs:
        forward_args.insert(0, forward_kwargs.pop("input"))
    first = forward_args[0]
    reference_out = reference(*forward_args, **forward_kwargs)
    out = ours(*_to_numpy(forward_args), **_to_numpy(forward_kwargs))

    expected = _to_numpy(reference_out)
    if isinstance(expected, tuple):
        assert isinstance(out, tuple) and len(out) == len(expected)
        for got, want in zip(out, expected, strict=True):
            np.testing.assert_allclose(got, want, rtol=1e-10, atol=1e-12)
    else:
        np.testing.assert_allclose(out, expected, rtol=1e-10, atol=1e-12)

    if not training and not _is_loss(reference):
        return
    reference_first = _first_array(reference_out)
    if not reference_first.requires_grad:
        return
    rng = np.random.default_rng(0)
    upstream = rng.standard_normal(reference_first.shape)
    leaves = [first] if first.requires_grad else []
    leaves += [p for p in reference.parameters() if p.requires_grad]
    grads = torch.autograd.grad(reference_first, leaves, torch.from_numpy(upstream))
    if _is_loss(reference):
        dx = ours.backward(upstream if upstream.ndim else float(upstream))
    else:
        dx = ours.backward(upstream)
    if first.requires_grad:
        np.testing.assert_allclose(dx, grads[0].numpy(), rtol=1e-10, atol=1e-12)
    parameter_grads = dict(
        zip(
            [n for n, p in reference.named_parameters() if p.requires_grad],
            grads[1:] if first.requires_grad else grads,
            strict=True,
        )
    )
    for pname, parameter in ours.named_parameters():
        np.testing.assert_allclose(
            parameter.grad, parameter_grads[pname].numpy(), rtol=1e-10, atol=1e-12, err_msg=pname
        )
    for bname, buffer in reference.named_buffers():
        np.testing.assert_allclose(
            ours.state_dict()[bname], buffer.numpy(), rtol=1e-10, atol=1e-12, err_msg=bname
        )
