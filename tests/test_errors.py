"""Every invalid argument or input raises ValueError/TypeError (RuntimeError for misuse of the
backward pass) with a one-line message that names the value and what was expected."""

from __future__ import annotations

import numpy as np
import pytest

import cnnkit.functional as F
import cnnkit.nn as nn
from cnnkit.gradcheck import gradcheck

try:
    import torch
except ImportError:  # the comparison with torch's own checks is skipped, the rest still runs
    torch = None

X32 = np.zeros((2, 3, 5, 5), np.float32)
W32 = np.zeros((4, 3, 3, 3), np.float32)
RNG = np.random.default_rng(0)


def linear_state(**changes):
    state = {"weight": np.zeros((2, 3)), "bias": np.zeros(2)}
    state.update(changes)
    return {k: v for k, v in state.items() if v is not None}


def no_super_module():
    class Broken(nn.Module):
        def __init__(self):
            self.weight = 1

    return Broken()


# (id, call, exception, regular expression the one-line message must match)
CASES = [
    # channels, kernel size, groups
    ("conv_wrong_channels", lambda: nn.Conv2d(1, 2, 3)(X32), ValueError,
     r"Conv2d expected input with 1 channels, got 3 \(input shape \(2, 3, 5, 5\)\)"),
    ("functional_conv_wrong_channels", lambda: F.conv2d(X32, np.zeros((4, 2, 3, 3), np.float32)),
     ValueError, r"conv2d expected input with 2 channels .*got 3"),
    ("conv_kernel_larger_than_padded_input", lambda: nn.Conv2d(3, 2, (7, 3))(X32), ValueError,
     r"kernel \(7, 3\) .*larger than the padded input \(5, 5\)"),
    ("conv_dilated_kernel_too_large", lambda: F.conv2d(X32, W32, padding=1, dilation=(1, 4)),
     ValueError, r"dilation \(1, 4\) spans \(3, 9\), larger than the padded input \(7, 7\)"),
    ("conv_groups_not_dividing_in", lambda: nn.Conv2d(3, 4, 3, groups=2), ValueError,
     r"groups=2 must divide in_channels=3 and out_channels=4"),
    ("conv_groups_not_dividing_out", lambda: nn.Conv2d(4, 6, 3, groups=4), ValueError,
     r"groups=4 must divide in_channels=4 and out_channels=6"),
    ("functional_conv_groups_not_dividing_out",
     lambda: F.conv2d(X32, np.zeros((4, 1, 3, 3), np.float32), groups=3), ValueError,
     r"groups=3 must divide the 4 output channels"),
    ("conv_groups_zero", lambda: nn.Conv2d(3, 3, 3, groups=0), ValueError,
     r"groups must be a positive int, got 0"),
    ("functional_conv_groups_bool", lambda: F.conv2d(X32, W32, groups=True), ValueError,
     r"groups must be a positive int, got True"),
    ("conv_in_channels_zero", lambda: nn.Conv2d(0, 4, 3), ValueError,
     r"in_channels must be a positive int, got 0"),
    ("conv_out_channels_float", lambda: nn.Conv2d(3, 2.5, 3), ValueError,
     r"out_channels must be a positive int, got 2.5"),
    ("linear_in_features_zero", lambda: nn.Linear(0, 2), ValueError,
     r"Linear in_features must be a positive int, got 0"),
    ("separable_depth_multiplier", lambda: nn.SeparableConv2d(3, 4, 3, depth_multiplier=0),
     ValueError, r"depth_multiplier must be a positive int, got 0"),
    ("functional_conv_weight_not_4d", lambda: F.conv2d(X32, np.zeros((4, 3, 3), np.float32)),
     ValueError, r"4-D weight .*got \(4, 3, 3\)"),
    ("functional_conv_bias_shape", lambda: F.conv2d(X32, W32, np.zeros(3, np.float32)),
     ValueError, r"bias of shape \(4,\), got \(3,\)"),
    # stride, padding, dilation, kernel size
    ("conv_stride_zero", lambda: nn.Conv2d(3, 4, 3, stride=0), ValueError,
     r"stride must be >= 1, got 0"),
    ("conv_stride_negative_pair", lambda: nn.Conv2d(3, 4, 3, stride=(1, -2)), ValueError,
     r"stride must be >= 1, got \(1, -2\)"),
    ("functional_conv_stride_negative", lambda: F.conv2d(X32, W32, stride=-1), ValueError,
     r"stride must be >= 1, got -1"),
    ("conv_stride_float", lambda: nn.Conv2d(3, 4, 3, stride=1.5), TypeError,
     r"stride must be an int or a pair of ints, got 1.5"),
    ("pool_stride_zero", lambda: nn.MaxPool2d(2, stride=0), ValueError,
     r"stride must be >= 1, got 0"),
    ("functional_pool_stride_zero", lambda: F.avg_pool2d(X32, 2, stride=(0, 1)), ValueError,
     r"stride must be >= 1, got \(0, 1\)"),
    ("conv_dilation_zero", lambda: F.conv2d(X32, W32, dilation=0), ValueError,
     r"dilation must be >= 1, got 0"),
    ("conv_kernel_zero", lambda: nn.Conv2d(3, 4, 0), ValueError,
     r"kernel_size must be >= 1, got 0"),
    ("conv_kernel_string", lambda: nn.Conv2d(3, 4, "3"), TypeError,
     r"kernel_size must be an int or a pair of ints, got '3'"),
    ("conv_kernel_triple", lambda: nn.Conv2d(3, 4, (3, 3, 3)), TypeError,
     r"kernel_size must be an int or a pair of ints, got \(3, 3, 3\)"),
    ("conv_bad_padding_string", lambda: nn.Conv2d(3, 4, 3, padding="full"), ValueError,
     r"Conv2d padding must be an int, a pair, 'same' or 'valid', got 'full'"),
    ("functional_conv_bad_padding_string", lambda: F.conv2d(X32, W32, padding="SAME"),
     ValueError, r"padding must be an int, a pair, 'same' or 'valid', got 'SAME'"),
    ("conv_negative_padding", lambda: nn.Conv2d(3, 4, 3, padding=-1), ValueError,
     r"padding must be >= 0, got -1"),
    ("conv_padding_triple", lambda: nn.Conv2d(3, 4, 3, padding=(1, 1, 1)), TypeError,
     r"padding must be an int or a pair of ints, got \(1, 1, 1\)"),
    ("pool_bad_padding_string", lambda: nn.AvgPool2d(2, padding="full"), ValueError,
     r"AvgPool2d padding must be an int, a pair, 'same' or 'valid', got 'full'"),
    ("functional_pool_bad_padding_string", lambda: F.max_pool2d(X32, 2, padding="full"),
     ValueError, r"padding must be an int, a pair, 'same' or 'valid', got 'full'"),
    ("pool_padding_more_than_half_kernel", lambda: nn.MaxPool2d(2, padding=2), ValueError,
     r"MaxPool2d padding \(2, 2\) must be at most half the kernel size \(2, 2\)"),
    ("avgpool_padding_more_than_half_kernel", lambda: nn.AvgPool2d((3, 4), padding=(2, 1)),
     ValueError, r"AvgPool2d padding \(2, 1\) must be at most half the kernel size \(3, 4\)"),
    ("functional_max_pool_padding", lambda: F.max_pool2d(X32, 3, padding=2), ValueError,
     r"max_pool2d padding 2 must be at most half the kernel size \(3, 3\)"),
    ("functional_avg_pool_padding", lambda: F.avg_pool2d(X32, 3, padding=(0, 2)), ValueError,
     r"avg_pool2d padding \(0, 2\) must be at most half the kernel size \(3, 3\)"),
    ("pool_kernel_larger_than_input", lambda: nn.MaxPool2d(7)(X32), ValueError,
     r"max_pool2d kernel \(7, 7\) is larger than the padded input \(5, 5\)"),
    ("avgpool_kernel_larger_than_input", lambda: F.avg_pool2d(X32, (2, 8), padding=1),
     ValueError, r"avg_pool2d kernel \(2, 8\) is larger than the padded input \(7, 7\)"),
    ("adaptive_output_size_zero", lambda: nn.AdaptiveAvgPool2d(0), ValueError,
     r"output_size must be >= 1, got 0"),
    # input rank
    ("conv_2d_input", lambda: nn.Conv2d(3, 4, 3)(np.zeros((5, 5), np.float32)), ValueError,
     r"expected 4-D input \(N, C, H, W\), got shape \(5, 5\)"),
    ("maxpool_2d_input", lambda: nn.MaxPool2d(2)(np.zeros((4, 4), np.float32)), ValueError,
     r"max_pool2d expected 4-D input \(N, C, H, W\), got shape \(4, 4\)"),
    ("avgpool_2d_input", lambda: F.avg_pool2d(np.zeros((4, 4), np.float32), 2), ValueError,
     r"avg_pool2d expected 4-D input \(N, C, H, W\), got shape \(4, 4\)"),
    ("adaptive_2d_input", lambda: nn.AdaptiveAvgPool2d(2)(np.zeros((4, 4))), ValueError,
     r"adaptive_avg_pool2d expected 4-D input .*got shape \(4, 4\)"),
    ("global_pool_2d_input", lambda: nn.GlobalAvgPool2d()(np.zeros((3, 4))), ValueError,
     r"global_avg_pool2d expected 4-D input .*got shape \(3, 4\)"),
    ("batchnorm2d_2d_input", lambda: nn.BatchNorm2d(3)(np.zeros((2, 3), np.float32)),
     ValueError, r"BatchNorm2d expected 4-D input, got shape \(2, 3\)"),
    ("batchnorm1d_4d_input", lambda: nn.BatchNorm1d(3)(X32), ValueError,
     r"BatchNorm1d expected 2-D or 3-D input, got shape \(2, 3, 5, 5\)"),
    ("linear_4d_input", lambda: nn.Linear(3, 2)(X32), ValueError,
     r"linear expected 2-D input \(N, in_features\), got \(2, 3, 5, 5\)"),
    ("linear_wrong_features", lambda: nn.Linear(3, 2)(np.zeros((2, 4), np.float32)),
     ValueError, r"linear expected input with 3 features, got 4 \(input shape \(2, 4\)\)"),
    ("batchnorm_wrong_channels", lambda: nn.BatchNorm2d(4)(X32), ValueError,
     r"BatchNorm2d expected input with 4 channels, got 3"),
    ("batchnorm_one_value_per_channel", lambda: nn.BatchNorm1d(3)(np.zeros((1, 3), np.float32)),
     ValueError, r"more than 1 value per channel, got input shape \(1, 3\)"),
    ("functional_batchnorm_stat_shape", lambda: F.batch_norm(X32, np.zeros(4), np.ones(4)),
     ValueError, r"running_mean of shape \(3,\) for input \(2, 3, 5, 5\), got \(4,\)"),
    ("functional_batchnorm_eval_without_stats",
     lambda: F.batch_norm(X32, None, None, training=False), ValueError,
     r"eval mode needs running_mean and running_var"),
    ("residual_shape_mismatch", lambda: nn.Residual(nn.Conv2d(3, 4, 1))(X32), ValueError,
     r"Residual body output \(2, 4, 5, 5\) and shortcut output \(2, 3, 5, 5\) differ"),
    # dtypes
    ("float64_into_float32_conv", lambda: nn.Conv2d(3, 4, 3)(X32.astype(np.float64)),
     TypeError, r"Conv2d expected input of dtype float32, got float64"),
    ("float32_into_float64_linear",
     lambda: nn.Linear(3, 2, dtype=np.float64)(np.zeros((2, 3), np.float32)), TypeError,
     r"Linear expected input of dtype float64, got float32"),
    ("float64_into_float32_batchnorm", lambda: nn.BatchNorm2d(3)(X32.astype(np.float64)),
     TypeError, r"BatchNorm2d expected input of dtype float32, got float64"),
    ("functional_conv_mixed_dtypes", lambda: F.conv2d(X32, W32.astype(np.float64)), TypeError,
     r"conv2d expected all arrays to share one dtype, got input float32, weight float64"),
    ("functional_conv_mixed_bias", lambda: F.conv2d(X32, W32, np.zeros(4)), TypeError,
     r"conv2d expected all arrays to share one dtype, .*bias float64"),
    ("functional_linear_mixed", lambda: F.linear(np.zeros((2, 3)), np.zeros((2, 3), np.float32)),
     TypeError, r"linear expected all arrays to share one dtype, got input float64, weight float3"),
    ("functional_batchnorm_mixed", lambda: F.batch_norm(X32, None, None, np.ones(3)), TypeError,
     r"batch_norm expected all arrays to share one dtype, got input float32, gamma float64"),
    ("conv_backward_mixed", lambda: F.conv2d_backward(
        np.zeros((2, 4, 3, 3)), F.conv2d(X32, W32)[1]), TypeError,
     r"conv2d_backward expected all arrays to share one dtype, got dout float64, weight float32"),
    ("conv_backward_wrong_shape", lambda: F.conv2d_backward(
        np.zeros((2, 5, 3, 3), np.float32), F.conv2d(X32, W32)[1]), ValueError,
     r"conv2d_backward expected dout of shape \(N=2, C_out=4, \.\.\.\), got \(2, 5, 3, 3\)"),
    ("integer_input_conv", lambda: nn.Conv2d(3, 4, 3)(X32.astype(np.int64)), TypeError,
     r"Conv2d expected input of dtype float32 or float64, got int64"),
    ("integer_input_functional_conv", lambda: F.conv2d(X32.astype(np.int32), W32), TypeError,
     r"conv2d expected input of dtype float32 or float64, got int32"),
    ("integer_input_max_pool", lambda: F.max_pool2d(X32.astype(np.uint8), 2), TypeError,
     r"max_pool2d expected input of dtype float32 or float64, got uint8"),
    ("float16_input_relu", lambda: nn.ReLU()(np.zeros(3, np.float16)), TypeError,
     r"ReLU expected input of dtype float32 or float64, got float16"),
    ("integer_input_softmax", lambda: nn.Softmax()(np.zeros((2, 3), int)), TypeError,
     r"Softmax expected input of dtype float32 or float64, got int64"),
    ("integer_input_flatten", lambda: nn.Flatten()(np.zeros((2, 3), np.int8)), TypeError,
     r"Flatten expected input of dtype float32 or float64, got int8"),
    ("integer_input_dropout", lambda: nn.Dropout()(np.zeros((2, 3), bool)), TypeError,
     r"Dropout expected input of dtype float32 or float64, got bool"),
    ("integer_logits", lambda: F.cross_entropy(np.zeros((2, 3), int), np.array([0, 1])),
     TypeError, r"cross_entropy expected logits of dtype float32 or float64, got int64"),
    ("integer_mse_prediction", lambda: F.mse_loss(np.zeros((2, 3), int), np.zeros((2, 3))),
     TypeError, r"mse_loss expected prediction of dtype float32 or float64, got int64"),
    ("list_input", lambda: nn.Conv2d(3, 4, 3)(X32.tolist()), TypeError,
     r"Conv2d expected a numpy.ndarray, got list"),
    ("functional_list_input", lambda: F.max_pool2d([[1.0]], 1), TypeError,
     r"max_pool2d expected a numpy.ndarray, got list"),
    ("layer_dtype_int", lambda: nn.Conv2d(3, 4, 3, dtype=np.int32), TypeError,
     r"dtype must be float32 or float64, got int32"),
    ("layer_dtype_float16", lambda: nn.Linear(3, 4, dtype="float16"), TypeError,
     r"dtype must be float32 or float64, got float16"),
    ("model_to_int", lambda: nn.Linear(3, 2).to(np.int64), TypeError,
     r"dtype must be float32 or float64, got int64"),
    ("gradcheck_float32_input", lambda: gradcheck(nn.Linear(3, 2), np.zeros((2, 3), np.float32)),
     TypeError, r"gradcheck needs float64 arrays, got input 0 of dtype float32"),
    ("gradcheck_float32_parameter", lambda: gradcheck(nn.Linear(3, 2), np.zeros((2, 3))),
     TypeError, r"gradcheck needs float64 arrays, got parameter weight of dtype float32"),
    ("gradcheck_two_inputs_for_module",
     lambda: gradcheck(nn.ReLU(), np.zeros((2, 3)), np.zeros((2, 3))), ValueError,
     r"gradcheck of a Module takes exactly one input, got 2"),
    # state dicts
    ("load_state_dict_wrong_shape",
     lambda: nn.Linear(3, 2).load_state_dict(linear_state(weight=np.zeros((3, 2)))), ValueError,
     r"load_state_dict entry 'weight' has shape \(3, 2\), expected \(2, 3\)"),
    ("load_state_dict_missing_key",
     lambda: nn.Linear(3, 2).load_state_dict(linear_state(bias=None)), ValueError,
     r"load_state_dict key mismatch for Linear: missing \['bias'\], unexpected \[\]"),
    ("load_state_dict_unexpected_key",
     lambda: nn.Linear(3, 2).load_state_dict(linear_state(extra=np.zeros(1))), ValueError,
     r"key mismatch for Linear: missing \[\], unexpected \['extra'\]"),
    ("load_state_dict_nested_missing_buffer",
     lambda: nn.Sequential(nn.BatchNorm1d(2)).load_state_dict(
         {"0.weight": np.ones(2), "0.bias": np.zeros(2), "0.running_mean": np.zeros(2),
          "0.num_batches_tracked": np.array(0)}), ValueError,
     r"missing \['0.running_var'\]"),
    ("load_state_dict_non_strict_still_checks_shapes",
     lambda: nn.Linear(3, 2).load_state_dict({"bias": np.zeros(3)}, strict=False), ValueError,
     r"entry 'bias' has shape \(3,\), expected \(2,\)"),
    # dropout, batch norm, activations
    ("dropout_p_above_one", lambda: nn.Dropout(1.5), ValueError,
     r"Dropout probability p must be in \[0, 1\], got 1.5"),
    ("dropout_p_negative", lambda: nn.Dropout(-0.1), ValueError,
     r"Dropout probability p must be in \[0, 1\], got -0.1"),
    ("dropout_p_string", lambda: nn.Dropout("0.5"), ValueError,
     r"Dropout probability p must be in \[0, 1\], got '0.5'"),
    ("functional_dropout_p", lambda: F.dropout(X32, 2, RNG), ValueError,
     r"dropout probability p must be in \[0, 1\], got 2"),
    ("batchnorm_momentum_above_one", lambda: nn.BatchNorm2d(3, momentum=1.5), ValueError,
     r"BatchNorm2d momentum must be in \[0, 1\], got 1.5"),
    ("batchnorm_momentum_negative", lambda: nn.BatchNorm1d(3, momentum=-0.1), ValueError,
     r"BatchNorm1d momentum must be in \[0, 1\], got -0.1"),
    ("batchnorm_eps_zero", lambda: nn.BatchNorm2d(3, eps=0), ValueError,
     r"BatchNorm2d eps must be a positive number, got 0"),
    ("batchnorm_eps_negative", lambda: nn.BatchNorm2d(3, eps=-1e-5), ValueError,
     r"BatchNorm2d eps must be a positive number, got -1e-05"),
    ("batchnorm_eps_string", lambda: nn.BatchNorm2d(3, eps="1e-5"), ValueError,
     r"BatchNorm2d eps must be a positive number, got '1e-5'"),
    ("batchnorm_num_features_zero", lambda: nn.BatchNorm2d(0), ValueError,
     r"BatchNorm2d num_features must be a positive int, got 0"),
    ("leaky_relu_slope_string", lambda: nn.LeakyReLU("a"), TypeError,
     r"LeakyReLU negative_slope must be a number, got 'a'"),
    # losses
    ("cross_entropy_label_too_large", lambda: F.cross_entropy(np.zeros((2, 3)), np.array([0, 3])),
     ValueError, r"cross_entropy labels must lie in \[0, 2\], got values from 0 to 3"),
    ("cross_entropy_label_negative",
     lambda: nn.CrossEntropyLoss()(np.zeros((2, 3)), np.array([-1, 0])), ValueError,
     r"cross_entropy labels must lie in \[0, 2\], got values from -1 to 0"),
    ("cross_entropy_float_labels", lambda: F.cross_entropy(np.zeros((2, 3)), np.array([0.0, 1])),
     TypeError, r"cross_entropy expected integer class labels, got dtype float64"),
    ("cross_entropy_label_count", lambda: F.cross_entropy(np.zeros((2, 3)), np.array([0, 1, 2])),
     ValueError, r"cross_entropy expected labels of shape \(2,\) or one-hot/probabilities of "
     r"shape \(2, 3\), got \(3,\)$"),
    ("cross_entropy_target_shape", lambda: F.cross_entropy(np.zeros((2, 3)), np.zeros((2, 4))),
     ValueError,
     r"expected labels of shape \(2,\) or one-hot/probabilities of shape \(2, 3\), got \(2, 4\)"),
    ("cross_entropy_logits_0d", lambda: F.cross_entropy(np.zeros(()), np.array(0)), ValueError,
     r"cross_entropy expected logits of shape \(C,\), \(N, C\) or \(N, C, d1, ...\), got \(\)"),
    ("cross_entropy_bad_reduction",
     lambda: F.cross_entropy(np.zeros((2, 3)), np.array([0, 1]), reduction="avg"), ValueError,
     r"reduction must be one of \('none', 'mean', 'sum'\), got 'avg'"),
    ("cross_entropy_module_bad_reduction", lambda: nn.CrossEntropyLoss(reduction="all"),
     ValueError, r"reduction must be one of \('none', 'mean', 'sum'\), got 'all'"),
    ("cross_entropy_label_smoothing", lambda: nn.CrossEntropyLoss(label_smoothing=1.5),
     ValueError, r"label_smoothing must be in \[0, 1\], got 1.5"),
    ("functional_label_smoothing",
     lambda: F.cross_entropy(np.zeros((2, 3)), np.array([0, 1]), label_smoothing=-0.1),
     ValueError, r"label_smoothing must be in \[0, 1\], got -0.1"),
    ("mse_bad_reduction", lambda: nn.MSELoss(reduction="avg"), ValueError,
     r"reduction must be one of \('none', 'mean', 'sum'\), got 'avg'"),
    ("mse_shape_mismatch", lambda: nn.MSELoss()(np.zeros((2, 3)), np.zeros((3, 2))), ValueError,
     r"mse_loss expected target of shape \(2, 3\), got \(3, 2\)"),
    # initialisation, containers, modules
    ("init_fan_of_1d_array", lambda: nn.init.kaiming_uniform_(np.zeros(3), RNG), ValueError,
     r"at least 2 dimensions, got shape \(3,\)"),
    ("init_unknown_nonlinearity", lambda: nn.init.calculate_gain("swish"), ValueError,
     r"nonlinearity must be one of .*got 'swish'"),
    ("init_bad_mode", lambda: nn.init.kaiming_normal_(np.zeros((3, 3)), RNG, mode="fan"),
     ValueError, r"mode must be 'fan_in' or 'fan_out', got 'fan'"),
    ("sequential_non_module", lambda: nn.Sequential(nn.ReLU(), np.tanh), TypeError,
     r"Sequential expected Module instances, got ufunc"),
    ("module_without_super_init", no_super_module, RuntimeError,
     r"Broken.__init__ must call super\(\).__init__\(\) before assigning attribute 'weight'"),
    ("missing_attribute", lambda: nn.ReLU().weight, AttributeError,
     r"ReLU has no attribute 'weight'"),
]  # fmt: skip


@pytest.mark.parametrize(
    "call, exception, pattern", [case[1:] for case in CASES], ids=[case[0] for case in CASES]
)
def test_invalid_argument_raises_one_line_message(call, exception, pattern):
    with pytest.raises(exception, match=pattern) as info:
        call()
    message = str(info.value)
    assert type(info.value) is exception  # not a subclass from somewhere deeper
    assert "\n" not in message and message.strip() == message


BACKWARD_BEFORE_FORWARD = {
    "Conv2d": (nn.Conv2d(3, 4, 3), (2, 4, 3, 3)),
    "SeparableConv2d": (nn.SeparableConv2d(3, 4, 3), (2, 4, 3, 3)),
    "Linear": (nn.Linear(3, 2), (2, 2)),
    "ReLU": (nn.ReLU(), (2, 3)),
    "LeakyReLU": (nn.LeakyReLU(), (2, 3)),
    "Sigmoid": (nn.Sigmoid(), (2, 3)),
    "Tanh": (nn.Tanh(), (2, 3)),
    "Softmax": (nn.Softmax(), (2, 3)),
    "LogSoftmax": (nn.LogSoftmax(), (2, 3)),
    "MaxPool2d": (nn.MaxPool2d(2), (2, 3, 2, 2)),
    "AvgPool2d": (nn.AvgPool2d(2), (2, 3, 2, 2)),
    "AdaptiveAvgPool2d": (nn.AdaptiveAvgPool2d(2), (2, 3, 2, 2)),
    "GlobalAvgPool2d": (nn.GlobalAvgPool2d(), (2, 3)),
    "BatchNorm2d": (nn.BatchNorm2d(3), (2, 3, 4, 4)),
    "BatchNorm1d": (nn.BatchNorm1d(3), (2, 3)),
    "Dropout": (nn.Dropout(), (2, 3)),
    "Flatten": (nn.Flatten(), (2, 12)),
    "Sequential": (nn.Sequential(nn.Linear(3, 2), nn.ReLU()), (2, 2)),
    "Residual": (nn.Residual(nn.ReLU()), (2, 3)),
}


@pytest.mark.parametrize("name", list(BACKWARD_BEFORE_FORWARD))
def test_backward_before_forward_raises(name):
    module, dout_shape = BACKWARD_BEFORE_FORWARD[name]
    with pytest.raises(RuntimeError, match=r"\w+\.backward called before forward$"):
        module.backward(np.zeros(dout_shape, np.float32))


def test_second_backward_without_a_new_forward_raises():
    layer = nn.Conv2d(3, 4, 3, rng=RNG)
    out = layer(X32)
    layer.backward(np.ones_like(out))
    with pytest.raises(RuntimeError, match=r"^Conv2d\.backward called before forward$"):
        layer.backward(np.ones_like(out))


@pytest.mark.parametrize("loss", [nn.CrossEntropyLoss(), nn.MSELoss()], ids=repr)
def test_loss_backward_before_call_raises(loss):
    name = type(loss).__name__
    with pytest.raises(RuntimeError, match=rf"^{name}\.backward called before forward$"):
        loss.backward()


def torch_x():
    return torch.tensor(X32)


@pytest.mark.parametrize(
    "ours, theirs",
    [
        (lambda: nn.Conv2d(3, 4, 3, groups=2), lambda: torch.nn.Conv2d(3, 4, 3, groups=2)),
        (lambda: nn.Conv2d(3, 4, 3, stride=0), lambda: torch.nn.Conv2d(3, 4, 3, 0)(torch_x())),
        (lambda: nn.Conv2d(3, 4, 3, padding="full"), lambda: torch.nn.Conv2d(3, 4, 3, padding="x")),
        (lambda: nn.Conv2d(1, 2, 3)(X32), lambda: torch.nn.Conv2d(1, 2, 3)(torch_x())),
        (lambda: nn.Conv2d(3, 2, 7)(X32), lambda: torch.nn.Conv2d(3, 2, 7)(torch_x())),
        (lambda: nn.MaxPool2d(2, padding=2)(X32), lambda: torch.nn.MaxPool2d(2, 1, 2)(torch_x())),
        (lambda: nn.AvgPool2d(7)(X32), lambda: torch.nn.AvgPool2d(7)(torch_x())),
        (lambda: nn.Dropout(1.5), lambda: torch.nn.Dropout(1.5)),
        (lambda: nn.Linear(3, 2)(np.zeros((2, 4), np.float32)),
         lambda: torch.nn.Linear(3, 2)(torch.zeros(2, 4))),
        (lambda: nn.BatchNorm1d(3)(np.zeros((1, 3), np.float32)),
         lambda: torch.nn.BatchNorm1d(3)(torch.zeros(1, 3))),
        (lambda: nn.CrossEntropyLoss()(np.zeros((2, 3)), np.array([0, 3])),
         lambda: torch.nn.CrossEntropyLoss()(torch.zeros(2, 3), torch.tensor([0, 3]))),
    ],
    ids=["groups", "stride", "padding_string", "channels", "kernel_too_large", "pool_padding",
         "pool_kernel_too_large", "dropout_p", "linear_features", "batchnorm_one_value", "label"],
)  # fmt: skip
@pytest.mark.skipif(torch is None, reason="needs torch")
def test_what_we_reject_torch_rejects_too(ours, theirs):
    with pytest.raises((ValueError, TypeError)):
        ours()
    with pytest.raises((ValueError, TypeError, RuntimeError, IndexError)):
        theirs()
