"""The textbook equations of a CNN as literal loops over the indices: slow, obviously correct.

Read this module first. Every function here is one equation, written index by index as it is
printed in a textbook, with no vectorisation and no cleverness; the fast kernels beside it
(conv.py, pool.py, norm.py, linear.py, loss.py) compute the same numbers, and the tests check
them against these loops on small shapes, a second oracle beside PyTorch.
``CNNKIT_KERNELS=reference`` makes the fast kernels hand their work to these loops (see
:func:`enabled`): convolutions, max and average pooling, training-mode batch norm of images,
linear layers and the plain softmax cross-entropy (mean over integer labels, no class weights,
no label smoothing); the arguments the loops do not take stay on the fast kernels.

Notation: an image batch I of shape (N, C, H, W) (NCHW, as PyTorch); n indexes images, d input
channels, k output channels (filters), (i, j) output positions, (x, y) kernel taps. P_p(I) is I
padded with p zeros on every side. A padding argument is an int p or explicit
((top, bottom), (left, right)).
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np


def enabled() -> bool:
    """True when ``CNNKIT_KERNELS=reference`` asks the layers to run on these loops."""
    return os.environ.get("CNNKIT_KERNELS", "auto").lower() == "reference"


@dataclass
class Call:
    """A forward pass made on these loops: its backward runs the matching loop backward.

    The fast kernels return one as their cache when :func:`enabled`, and their backward
    functions hand it ``delta``: ``backward_loop(delta, *arguments)``.
    """

    backward_loop: Callable
    arguments: tuple

    def backward(self, delta: np.ndarray):
        """The gradients of this call, by the loop backward."""
        return self.backward_loop(delta, *self.arguments)


def _pairs(padding) -> tuple[tuple[int, int], tuple[int, int]]:
    if isinstance(padding, int):
        return (padding, padding), (padding, padding)
    (top, bottom), (left, right) = padding
    return (top, bottom), (left, right)


def _two(value) -> tuple[int, int]:
    return (value, value) if isinstance(value, int) else tuple(value)


def zero_pad(image: np.ndarray, padding) -> np.ndarray:
    """P_p(I): the image with zeros added around each (H, W) plane."""
    (top, bottom), (left, right) = _pairs(padding)
    n_images, channels, height, width = image.shape
    padded = np.zeros(
        (n_images, channels, top + height + bottom, left + width + right), image.dtype
    )
    for n in range(n_images):
        for d in range(channels):
            for row in range(height):
                for col in range(width):
                    padded[n, d, top + row, left + col] = image[n, d, row, col]
    return padded


def conv2d(image, weight, bias=None, stride=1, padding=0, dilation=1, groups=1) -> np.ndarray:
    """O[n,k,i,j] = B[k] + sum_d sum_x sum_y W[k,d,x,y] * P_p(I)[n, g*D + d, i*s + x*r, j*s + y*r].

    W has shape (K, D, kH, kW) with D = C / groups input channels per filter; filter k belongs to
    group g = k // (K / groups) and sees only that group's D input channels. s is the stride, r
    the dilation. Output size: floor((H + p_top + p_bottom - r*(kH - 1) - 1) / s) + 1.
    """
    (s_h, s_w), (r_h, r_w) = _two(stride), _two(dilation)
    padded = zero_pad(image, padding)
    n_images = image.shape[0]
    filters, depth, k_h, k_w = weight.shape
    out_h = (padded.shape[2] - r_h * (k_h - 1) - 1) // s_h + 1
    out_w = (padded.shape[3] - r_w * (k_w - 1) - 1) // s_w + 1
    filters_per_group = filters // groups
    out = np.zeros((n_images, filters, out_h, out_w), image.dtype)
    for n in range(n_images):
        for k in range(filters):
            g = k // filters_per_group
            for i in range(out_h):
                for j in range(out_w):
                    total = 0.0 if bias is None else bias[k]
                    for d in range(depth):
                        for x in range(k_h):
                            for y in range(k_w):
                                total += (
                                    weight[k, d, x, y]
                                    * padded[n, g * depth + d, i * s_h + x * r_h, j * s_w + y * r_w]
                                )
                    out[n, k, i, j] = total
    return out


def conv2d_backward(delta, image, weight, stride=1, padding=0, dilation=1, groups=1):
    """The delta rule for a convolution: (dL/dI, dL/dW, dL/dB) from delta = dL/dO.

    Each output O[n,k,i,j] was a sum of W[k,d,x,y] * P_p(I)[n, c, i*s + x*r, j*s + y*r], so
    - dL/dP_p(I)[n, c, ...] = sum over the outputs that touched it of W[k,d,x,y] * delta[n,k,i,j]
      (the delta_j = sum_k delta_k W_jk of backpropagation; the layer below multiplies it by
      its activation's derivative A'), then the padding is cut off;
    - dL/dW[k,d,x,y] = sum_n sum_i sum_j delta[n,k,i,j] * P_p(I)[n, c, i*s + x*r, j*s + y*r]
      (delta times the previous layer's output);
    - dL/dB[k] = sum_n sum_i sum_j delta[n,k,i,j].
    """
    (s_h, s_w), (r_h, r_w) = _two(stride), _two(dilation)
    (top, _), (left, _) = _pairs(padding)
    padded = zero_pad(image, padding)
    d_padded = np.zeros_like(padded)
    d_weight = np.zeros_like(weight)
    d_bias = np.zeros(weight.shape[0], delta.dtype)
    n_images, filters, out_h, out_w = delta.shape
    _, depth, k_h, k_w = weight.shape
    filters_per_group = filters // groups
    for n in range(n_images):
        for k in range(filters):
            g = k // filters_per_group
            for i in range(out_h):
                for j in range(out_w):
                    d_bias[k] += delta[n, k, i, j]
                    for d in range(depth):
                        for x in range(k_h):
                            for y in range(k_w):
                                row, col = i * s_h + x * r_h, j * s_w + y * r_w
                                c = g * depth + d
                                d_padded[n, c, row, col] += weight[k, d, x, y] * delta[n, k, i, j]
                                d_weight[k, d, x, y] += delta[n, k, i, j] * padded[n, c, row, col]
    height, width = image.shape[2:]
    d_image = d_padded[:, :, top : top + height, left : left + width].copy()
    return d_image, d_weight, d_bias


def max_pool2d(image, kernel_size, stride=None, padding=0) -> np.ndarray:
    """O[n,c,i,j] = max over (x, y) of P_{-inf}(I)[n, c, i*s + x, j*s + y] (padding never wins)."""
    (k_h, k_w) = _two(kernel_size)
    (s_h, s_w) = (k_h, k_w) if stride is None else _two(stride)
    (top, bottom), (left, right) = _pairs(padding)
    n_images, channels, height, width = image.shape
    out_h = (height + top + bottom - k_h) // s_h + 1
    out_w = (width + left + right - k_w) // s_w + 1
    out = np.zeros((n_images, channels, out_h, out_w), image.dtype)
    for n in range(n_images):
        for c in range(channels):
            for i in range(out_h):
                for j in range(out_w):
                    best = -math.inf
                    for x in range(k_h):
                        for y in range(k_w):
                            row, col = i * s_h + x - top, j * s_w + y - left
                            if 0 <= row < height and 0 <= col < width:
                                best = max(best, image[n, c, row, col])
                    out[n, c, i, j] = best
    return out


def max_pool2d_backward(delta, image, kernel_size, stride=None, padding=0) -> np.ndarray:
    """dL/dI: each window's delta goes to its maximum (the first one, row by row, on a tie)."""
    (k_h, k_w) = _two(kernel_size)
    (s_h, s_w) = (k_h, k_w) if stride is None else _two(stride)
    (top, _), (left, _) = _pairs(padding)
    height, width = image.shape[2:]
    d_image = np.zeros_like(image)
    n_images, channels, out_h, out_w = delta.shape
    for n in range(n_images):
        for c in range(channels):
            for i in range(out_h):
                for j in range(out_w):
                    best, where = -math.inf, None
                    for x in range(k_h):
                        for y in range(k_w):
                            row, col = i * s_h + x - top, j * s_w + y - left
                            inside = 0 <= row < height and 0 <= col < width
                            if inside and image[n, c, row, col] > best:
                                best, where = image[n, c, row, col], (row, col)
                    d_image[n, c, where[0], where[1]] += delta[n, c, i, j]
    return d_image


def avg_pool2d(image, kernel_size, stride=None, padding=0, count_include_pad=True) -> np.ndarray:
    """O[n,c,i,j] = (1 / |window|) * sum over (x, y) of P_p(I)[n, c, i*s + x, j*s + y].

    |window| is kH * kW with ``count_include_pad``, else the number of taps inside the image.
    """
    (k_h, k_w) = _two(kernel_size)
    (s_h, s_w) = (k_h, k_w) if stride is None else _two(stride)
    (top, bottom), (left, right) = _pairs(padding)
    n_images, channels, height, width = image.shape
    out_h = (height + top + bottom - k_h) // s_h + 1
    out_w = (width + left + right - k_w) // s_w + 1
    out = np.zeros((n_images, channels, out_h, out_w), image.dtype)
    for n in range(n_images):
        for c in range(channels):
            for i in range(out_h):
                for j in range(out_w):
                    total, inside = 0.0, 0
                    for x in range(k_h):
                        for y in range(k_w):
                            row, col = i * s_h + x - top, j * s_w + y - left
                            if 0 <= row < height and 0 <= col < width:
                                total += image[n, c, row, col]
                                inside += 1
                    out[n, c, i, j] = total / (k_h * k_w if count_include_pad else inside)
    return out


def avg_pool2d_backward(
    delta, image_shape, kernel_size, stride=None, padding=0, count_include_pad=True
) -> np.ndarray:
    """dL/dI: each window's delta, divided by |window|, added to every tap inside the image."""
    (k_h, k_w) = _two(kernel_size)
    (s_h, s_w) = (k_h, k_w) if stride is None else _two(stride)
    (top, _), (left, _) = _pairs(padding)
    height, width = image_shape[2:]
    d_image = np.zeros(image_shape, delta.dtype)
    n_images, channels, out_h, out_w = delta.shape
    for n in range(n_images):
        for c in range(channels):
            for i in range(out_h):
                for j in range(out_w):
                    taps = [
                        (i * s_h + x - top, j * s_w + y - left)
                        for x in range(k_h)
                        for y in range(k_w)
                        if 0 <= i * s_h + x - top < height and 0 <= j * s_w + y - left < width
                    ]
                    divisor = k_h * k_w if count_include_pad else len(taps)
                    for row, col in taps:
                        d_image[n, c, row, col] += delta[n, c, i, j] / divisor
    return d_image


def batch_norm(image, gamma, beta, eps=1e-5):
    """Training-mode batch norm: Y = gamma[c] * (I - mu[c]) / sqrt(var[c] + eps) + beta[c].

    mu[c] and var[c] (biased: divided by m) run over the m = N * H * W values of channel c.
    Returns Y and (mu, var), the batch statistics (Ioffe & Szegedy, 2015).
    """
    n_images, channels, height, width = image.shape
    count = n_images * height * width
    mean, var = np.zeros(channels, image.dtype), np.zeros(channels, image.dtype)
    out = np.zeros_like(image)
    for c in range(channels):
        total = 0.0
        for n in range(n_images):
            for row in range(height):
                for col in range(width):
                    total += image[n, c, row, col]
        mean[c] = total / count
        squares = 0.0
        for n in range(n_images):
            for row in range(height):
                for col in range(width):
                    squares += (image[n, c, row, col] - mean[c]) ** 2
        var[c] = squares / count
        for n in range(n_images):
            for row in range(height):
                for col in range(width):
                    normalised = (image[n, c, row, col] - mean[c]) / math.sqrt(var[c] + eps)
                    out[n, c, row, col] = gamma[c] * normalised + beta[c]
    return out, (mean, var)


def batch_norm_backward(delta, image, gamma, eps=1e-5):
    """(dL/dI, dL/dgamma, dL/dbeta) of training-mode batch norm, element by element.

    With xhat = (I - mu) / sqrt(var + eps) over the m values of a channel:
    dbeta = sum delta, dgamma = sum delta * xhat, and
    dL/dI = gamma / (m * sqrt(var + eps)) * (m * delta - dbeta - xhat * dgamma).
    """
    n_images, channels, height, width = image.shape
    count = n_images * height * width
    _, (mean, var) = batch_norm(image, gamma, np.zeros_like(gamma), eps)
    d_image = np.zeros_like(image)
    d_gamma, d_beta = np.zeros_like(gamma), np.zeros_like(gamma)
    for c in range(channels):
        inv_std = 1.0 / math.sqrt(var[c] + eps)
        for n in range(n_images):
            for row in range(height):
                for col in range(width):
                    xhat = (image[n, c, row, col] - mean[c]) * inv_std
                    d_beta[c] += delta[n, c, row, col]
                    d_gamma[c] += delta[n, c, row, col] * xhat
        for n in range(n_images):
            for row in range(height):
                for col in range(width):
                    xhat = (image[n, c, row, col] - mean[c]) * inv_std
                    d_image[n, c, row, col] = (
                        gamma[c]
                        * inv_std
                        / count
                        * (count * delta[n, c, row, col] - d_beta[c] - xhat * d_gamma[c])
                    )
    return d_image, d_gamma, d_beta


def linear(inputs, weight, bias=None) -> np.ndarray:
    """O[n,k] = B[k] + sum_j W[k,j] * I[n,j] (a fully connected layer, y = W x + b)."""
    n_rows, n_in = inputs.shape
    out = np.zeros((n_rows, weight.shape[0]), inputs.dtype)
    for n in range(n_rows):
        for k in range(weight.shape[0]):
            total = 0.0 if bias is None else bias[k]
            for j in range(n_in):
                total += weight[k, j] * inputs[n, j]
            out[n, k] = total
    return out


def linear_backward(delta, inputs, weight):
    """dL/dI[n,j] = sum_k delta[n,k] W[k,j]; dL/dW[k,j] = sum_n delta[n,k] I[n,j]; dB = sum delta.

    The same delta rule as the convolution's, with every output connected to every input.
    """
    d_inputs, d_weight = np.zeros_like(inputs), np.zeros_like(weight)
    d_bias = np.zeros(weight.shape[0], delta.dtype)
    for n in range(inputs.shape[0]):
        for k in range(weight.shape[0]):
            d_bias[k] += delta[n, k]
            for j in range(inputs.shape[1]):
                d_inputs[n, j] += delta[n, k] * weight[k, j]
                d_weight[k, j] += delta[n, k] * inputs[n, j]
    return d_inputs, d_weight, d_bias


def softmax_cross_entropy(logits, labels) -> float:
    """L = (1/N) sum_n [log sum_k exp(z[n,k] - m_n) + m_n - z[n, y_n]], m_n = max_k z[n,k]."""
    total = 0.0
    for n in range(logits.shape[0]):
        top = max(logits[n, k] for k in range(logits.shape[1]))
        log_sum = math.log(sum(math.exp(logits[n, k] - top) for k in range(logits.shape[1])))
        total += log_sum + top - logits[n, labels[n]]
    return total / logits.shape[0]


def softmax_cross_entropy_backward(logits, labels) -> np.ndarray:
    """dL/dz[n,k] = (softmax(z[n])_k - [k == y_n]) / N."""
    grad = np.zeros_like(logits)
    for n in range(logits.shape[0]):
        top = max(logits[n, k] for k in range(logits.shape[1]))
        exps = [math.exp(logits[n, k] - top) for k in range(logits.shape[1])]
        for k in range(logits.shape[1]):
            grad[n, k] = (exps[k] / sum(exps) - (1.0 if k == labels[n] else 0.0)) / logits.shape[0]
    return grad
