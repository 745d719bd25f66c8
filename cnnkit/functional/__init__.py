"""Pure forward/backward kernels: each op returns (out, cache); ``*_backward`` takes the cache."""

from cnnkit.functional.activation import (
    leaky_relu,
    leaky_relu_backward,
    log_softmax,
    log_softmax_backward,
    relu,
    relu_backward,
    sigmoid,
    sigmoid_backward,
    softmax,
    softmax_backward,
    tanh,
    tanh_backward,
)
from cnnkit.functional.adaptive_pool import (
    adaptive_avg_pool2d,
    adaptive_avg_pool2d_backward,
    adaptive_max_pool2d,
    adaptive_max_pool2d_backward,
    global_avg_pool2d,
    global_avg_pool2d_backward,
)
from cnnkit.functional.conv import conv2d, conv2d_backward, conv2d_output_shape
from cnnkit.functional.dropout import dropout, dropout_backward
from cnnkit.functional.linear import flatten, flatten_backward, linear, linear_backward
from cnnkit.functional.loss import (
    cross_entropy,
    cross_entropy_backward,
    mse_loss,
    mse_loss_backward,
)
from cnnkit.functional.norm import batch_norm, batch_norm_backward
from cnnkit.functional.pool import avg_pool2d, avg_pool2d_backward, max_pool2d, max_pool2d_backward
from cnnkit.functional.unpool import max_unpool2d, max_unpool2d_backward

__all__ = [
    "adaptive_avg_pool2d",
    "adaptive_avg_pool2d_backward",
    "adaptive_max_pool2d",
    "adaptive_max_pool2d_backward",
    "avg_pool2d",
    "avg_pool2d_backward",
    "batch_norm",
    "batch_norm_backward",
    "conv2d",
    "conv2d_backward",
    "conv2d_output_shape",
    "cross_entropy",
    "cross_entropy_backward",
    "dropout",
    "dropout_backward",
    "flatten",
    "flatten_backward",
    "global_avg_pool2d",
    "global_avg_pool2d_backward",
    "leaky_relu",
    "leaky_relu_backward",
    "linear",
    "linear_backward",
    "log_softmax",
    "log_softmax_backward",
    "max_pool2d",
    "max_pool2d_backward",
    "max_unpool2d",
    "max_unpool2d_backward",
    "mse_loss",
    "mse_loss_backward",
    "relu",
    "relu_backward",
    "sigmoid",
    "sigmoid_backward",
    "softmax",
    "softmax_backward",
    "tanh",
    "tanh_backward",
]
