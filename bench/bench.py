"""Time cnnkit against PyTorch, side by side, in one process, on the same arrays.

Usage::

    python bench/bench.py [--cases L1,L2,...|all] [--repeats N] [--warmup N] [--threads T]
                          [--json OUT.json] [--quick]

Method
------
* Same work on both sides. Every case builds a cnnkit layer or model, then a PyTorch mirror of
  it (:func:`to_torch` walks the cnnkit module tree and builds the equivalent ``torch.nn`` tree
  under the same names) and copies cnnkit's weights into it through ``state_dict``. Inputs are
  shared: the torch tensors are ``torch.from_numpy`` views of the NumPy arrays cnnkit reads.
* Mirror check. The first warm-up call of each side also checks that the two agree (outputs,
  and for backward rows every gradient) with ``np.allclose(ours, theirs, rtol=1e-3,
  atol=1e-3 * max|theirs|)``. A row that fails is checked again on float64 copies of the case
  (rtol 1e-6): deep batch-norm networks amplify float32 rounding in their gradients past 1e-3
  even when both sides compute the same maths. The table marks (~) for "rounding only" and (!)
  for a real mismatch, whose timing would not compare like with like.
* Timing. ``warmup`` untimed calls of each side (at least one: the mirror check), then
  ``repeats`` timed calls alternating cnnkit, torch, cnnkit, torch, ... so that load from other
  processes hits both alike; ``time.perf_counter``; the table shows the median of each side in
  milliseconds and ratio = median cnnkit / median torch (above 1: cnnkit is slower), and next
  to it the first and third quartiles of the ratios of the alternated pairs (cnnkit call i over
  torch call i): a machine that slows down for a while slows both calls of a pair, so a wide
  range means the run was noisy, not that the ratio moved. Before each
  timed call the script waits until the process is idle (:func:`settle`): OpenBLAS' worker
  threads spin for ~0.1 s after every NumPy call, and on a 2-core machine they would otherwise
  steal a core from the torch call that follows (which made torch look up to 8x slower).
  The xception case gets at most 3 repeats (a NumPy call takes seconds).
* Memory. Both sides share the process's malloc. By default the script first calls
  ``cnnkit.keep_freed_memory()``, as every ``cnnkit`` command does, so freed arrays are reused
  instead of costing page faults on the next call; ``--return-freed-memory`` leaves glibc's
  defaults.
* Threads. ``--threads T`` (default ``os.cpu_count()``) sets ``torch.set_num_threads(T)`` and
  limits NumPy's BLAS (OpenBLAS) pool with ``threadpoolctl.threadpool_limits(T, "blas")``;
  cnnkit's compiled kernels run on one thread. ``CNNKIT_KERNELS=numpy`` times the NumPy kernels
  alone.
  With T > 1 on a machine that other jobs keep busy, both libraries lose time waiting for
  descheduled worker threads (cnnkit more, as it makes many small BLAS calls); ``--threads 1``
  gives steadier numbers there.
* Peak memory, one extra call of each side, with the same definition for both: the highest
  total size of the buffers allocated *during the call* that are alive at the same time
  (arrays/tensors that existed before the call, weights and inputs among them, do not count).
  cnnkit: ``tracemalloc`` (NumPy reports its array buffers to it). torch: the CPU allocator's
  events under ``torch.profiler.profile(profile_memory=True)``, whose running sum is taken over
  allocations made while profiling. Neither side sees a BLAS library's internal workspace
  (OpenBLAS' own buffers, oneDNN scratchpads) nor Python objects on the torch side.
* Passes. "forward": one forward call (torch under ``torch.no_grad()``, cnnkit keeps the cache
  its backward would need, as a training forward pass does). "fwd+bwd": forward, then every
  gradient (input, weight, bias) for a random upstream gradient. "train step": forward,
  cross-entropy, backward, SGD(lr=0.01, momentum=0.9) update; neither side computes the
  gradient of the input images (torch's input does not require grad, cnnkit's first layer
  skips it as ``cnnkit train`` does: ``cnnkit.train.skip_input_gradient``). "inference": eval
  mode, torch under ``torch.no_grad()`` and cnnkit under ``cnnkit.no_grad()`` (no caches kept).
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import platform
import re
import shlex
import statistics
import sys
import time
import tracemalloc
from collections import OrderedDict
from collections.abc import Callable
from contextlib import contextmanager
from dataclasses import dataclass, field

import numpy as np
import torch
import torch.nn.functional as F
from threadpoolctl import threadpool_limits
from torch import nn

import cnnkit as ck
from cnnkit.functional import _compiled
from cnnkit.models import (
    BasicBlock,
    GlobalMaxPool2d,
    SequentialModel,
    XceptionBlock,
    ZeroPadShortcut,
)
from cnnkit.train import skip_input_gradient

MIB = 2**20
RTOL = 1e-3  # mirror check in float32
RTOL_FLOAT64 = 1e-6  # the recheck of a row that fails in float32
SLOW_CASES = {"xception": 3}  # case -> most repeats it gets (several seconds a run in NumPy)


# --------------------------------------------------------------------------------------------
# cnnkit -> torch.nn mirror
# --------------------------------------------------------------------------------------------


def tf_same_pad(hw, kernel, stride, dilation=(1, 1)) -> tuple[int, int, int, int]:
    """TensorFlow 'same' padding as F.pad's (left, right, top, bottom): extra at the end."""
    pads = []
    for size, k, s, d in zip(hw, kernel, stride, dilation, strict=True):
        out = -(-size // s)
        total = max((out - 1) * s + (k - 1) * d + 1 - size, 0)
        pads.append((total // 2, total - total // 2))
    (top, bottom), (left, right) = pads
    return left, right, top, bottom


class SamePadConv2d(nn.Conv2d):
    """nn.Conv2d with TensorFlow 'same' padding (asymmetric when the total is odd)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        pad = tf_same_pad(x.shape[-2:], self.kernel_size, self.stride, self.dilation)
        return super().forward(F.pad(x, pad))


class SamePadMaxPool2d(nn.MaxPool2d):
    """nn.MaxPool2d after padding with -inf by TensorFlow's 'same' rule (Keras MaxPooling2D)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        pad = tf_same_pad(x.shape[-2:], _pair(self.kernel_size), _pair(self.stride))
        return super().forward(F.pad(x, pad, value=float("-inf")))


class GlobalAvgPool(nn.Module):
    """Mean over H and W."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.mean(dim=(2, 3))


class GlobalMaxPool(nn.Module):
    """Maximum over H and W."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.amax(dim=(2, 3))


class Mirror(nn.Module):
    """A torch module holding the mirrors of a cnnkit module's children, same names, same order."""

    def __init__(self, source: ck.nn.Module):
        super().__init__()
        for name, child in named_children(source):
            self.add_module(name, to_torch(child))

    def child(self, name: str) -> nn.Module | None:
        """The child called ``name``, or None where cnnkit has none (e.g. no downsample)."""
        return self._modules.get(name)


class ResidualMirror(Mirror):
    """cnnkit.nn.Residual: body(x) + shortcut(x), the shortcut being the identity when absent."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        shortcut = self.child("shortcut")
        return self.body(x) + (x if shortcut is None else shortcut(x))


class SeparableMirror(Mirror):
    """cnnkit.nn.SeparableConv2d: pointwise(depthwise(x))."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.pointwise(self.depthwise(x))


class BasicBlockMirror(Mirror):
    """cnnkit.models.BasicBlock: relu2(bn2(conv2(relu1(bn1(conv1(x))))) + shortcut(x))."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.bn2(self.conv2(self.relu1(self.bn1(self.conv1(x)))))
        downsample = self.child("downsample")
        return self.relu2(out + (x if downsample is None else downsample(x)))


class XceptionBlockMirror(Mirror):
    """cnnkit.models.XceptionBlock: rep(x) + (x or skipbn(skip(x)))."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        skip = self.child("skip")
        return self.rep(x) + (x if skip is None else self.skipbn(skip(x)))


class ZeroPadShortcutMirror(nn.Module):
    """cnnkit.models.ZeroPadShortcut: x[:, :, ::s, ::s] zero-padded to out_channels."""

    def __init__(self, source: ZeroPadShortcut):
        super().__init__()
        self.stride = source.stride
        self.before = source.before
        self.after = source.out_channels - source.in_channels - source.before

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        s = self.stride
        return F.pad(x[:, :, ::s, ::s], (0, 0, 0, 0, self.before, self.after))


def _pair(value) -> tuple[int, int]:
    return (value, value) if isinstance(value, int) else tuple(value)


def named_children(module: ck.nn.Module):
    """(name, child) for the direct children of a cnnkit module, in registration order."""
    for name, child in module.named_modules():
        if name and "." not in name:
            yield name, child


def _conv(m: ck.nn.Conv2d) -> nn.Module:
    args = (m.in_channels, m.out_channels, m.kernel_size, m.stride)
    kwargs = dict(dilation=m.dilation, groups=m.groups, bias=m.bias is not None)
    if m.padding == "same":
        return SamePadConv2d(*args, padding=0, **kwargs)
    return nn.Conv2d(*args, padding=0 if m.padding == "valid" else m.padding, **kwargs)


def _max_pool(m: ck.nn.MaxPool2d) -> nn.Module:
    if m.padding == "same":
        return SamePadMaxPool2d(m.kernel_size, m.stride)
    return nn.MaxPool2d(m.kernel_size, m.stride, 0 if m.padding == "valid" else m.padding)


def _avg_pool(m: ck.nn.AvgPool2d) -> nn.Module:
    if m.padding == "same":
        raise NotImplementedError("no torch mirror for AvgPool2d(padding='same')")
    padding = 0 if m.padding == "valid" else m.padding
    return nn.AvgPool2d(m.kernel_size, m.stride, padding, count_include_pad=m.count_include_pad)


def _batch_norm(m) -> nn.Module:
    torch_class = nn.BatchNorm2d if isinstance(m, ck.nn.BatchNorm2d) else nn.BatchNorm1d
    return torch_class(m.num_features, m.eps, m.momentum, m.affine, m.track_running_stats)


MIRRORS: dict[type, Callable[[ck.nn.Module], nn.Module]] = {
    ck.nn.Conv2d: _conv,
    ck.nn.SeparableConv2d: SeparableMirror,
    ck.nn.BatchNorm1d: _batch_norm,
    ck.nn.BatchNorm2d: _batch_norm,
    ck.nn.Linear: lambda m: nn.Linear(m.in_features, m.out_features, bias=m.bias is not None),
    ck.nn.Flatten: lambda m: nn.Flatten(m.start_dim),
    ck.nn.Identity: lambda m: nn.Identity(),
    ck.nn.Dropout: lambda m: nn.Dropout(m.p),
    ck.nn.ReLU: lambda m: nn.ReLU(),
    ck.nn.LeakyReLU: lambda m: nn.LeakyReLU(m.negative_slope),
    ck.nn.Sigmoid: lambda m: nn.Sigmoid(),
    ck.nn.Tanh: lambda m: nn.Tanh(),
    ck.nn.Softmax: lambda m: nn.Softmax(m.dim),
    ck.nn.LogSoftmax: lambda m: nn.LogSoftmax(m.dim),
    ck.nn.MaxPool2d: _max_pool,
    ck.nn.AvgPool2d: _avg_pool,
    ck.nn.AdaptiveAvgPool2d: lambda m: nn.AdaptiveAvgPool2d(m.output_size),
    ck.nn.GlobalAvgPool2d: lambda m: GlobalAvgPool(),
    GlobalMaxPool2d: lambda m: GlobalMaxPool(),
    ck.nn.Residual: ResidualMirror,
    BasicBlock: BasicBlockMirror,
    XceptionBlock: XceptionBlockMirror,
    ZeroPadShortcut: ZeroPadShortcutMirror,
}


def _is_plain_sequence(module: ck.nn.Module) -> bool:
    """A Sequential, or a zoo model that applies its children in order without its own forward."""
    if isinstance(module, ck.nn.Sequential):
        return True
    return isinstance(module, SequentialModel) and type(module).forward is SequentialModel.forward


def to_torch(module: ck.nn.Module) -> nn.Module:
    """The torch.nn module computing what ``module`` computes, with the same state_dict keys.

    Raises TypeError for a cnnkit module it has no mirror for, rather than guessing.
    """
    build = MIRRORS.get(type(module))
    if build is not None:
        return build(module)
    if _is_plain_sequence(module):
        return nn.Sequential(OrderedDict((n, to_torch(c)) for n, c in named_children(module)))
    raise TypeError(f"no torch mirror for cnnkit module {type(module).__name__}")


def mirror(module: ck.nn.Module) -> nn.Module:
    """``to_torch(module)`` holding a copy of ``module``'s weights and buffers, in its mode."""
    twin = to_torch(module)
    state = {k: torch.from_numpy(np.array(v)) for k, v in module.state_dict().items()}
    floats = [v.dtype for v in state.values() if v.is_floating_point()]
    if floats:  # compute in cnnkit's dtype (float32, or float64 for the mirror recheck)
        twin.to(floats[0])
    twin.load_state_dict(state, strict=True)
    return twin.train(module.training)


# --------------------------------------------------------------------------------------------
# Cases: each row is a pair of zero-argument callables returning what the mirror check compares
# --------------------------------------------------------------------------------------------


@dataclass
class Row:
    """One table row: a cnnkit call and the torch call that does the same work."""

    case: str
    kind: str
    ours: Callable[[], list]
    theirs: Callable[[], list]
    results: dict = field(default_factory=dict)


CONV_CASES = {
    # name: (batch, in_channels, out_channels, size, kernel, stride, padding, groups)
    "L1": (64, 1, 32, 28, 3, 1, 1, 1),
    "L2": (64, 32, 64, 14, 3, 1, 1, 1),
    "L3": (128, 64, 64, 16, 3, 1, 1, 1),
    "L4": (32, 128, 128, 32, 3, 1, 1, 1),
    "L5": (32, 256, 256, 19, 1, 1, 0, 1),
    "DW": (32, 128, 128, 38, 3, 1, 1, 128),
    "strided": (32, 64, 128, 32, 3, 2, 1, 1),
}


def _randn(rng: np.random.Generator, shape, dtype) -> np.ndarray:
    return rng.standard_normal(shape, dtype=dtype)


def layer_rows(case: str, layer: ck.nn.Module, x: np.ndarray, rng) -> list[Row]:
    """'forward' and 'fwd+bwd' rows for one layer on input ``x``."""
    twin = mirror(layer)
    x_t = torch.from_numpy(x)
    x_grad = x_t.detach().requires_grad_()
    dy = _randn(rng, layer(x).shape, x.dtype)
    dy_t = torch.from_numpy(dy)
    params = layer.parameters()
    twin_params = list(twin.parameters())

    def ours_forward():
        return [layer(x)]

    def theirs_forward():
        with torch.no_grad():
            return [twin(x_t)]

    def ours_backward():
        layer.zero_grad()
        y = layer(x)
        dx = layer.backward(dy)
        return [y, dx, *(p.grad for p in params)]

    def theirs_backward():
        y = twin(x_grad)
        return [y, *torch.autograd.grad(y, [x_grad, *twin_params], dy_t)]

    return [
        Row(case, "forward", ours_forward, theirs_forward),
        Row(case, "fwd+bwd", ours_backward, theirs_backward),
    ]


def conv_case(name: str) -> Callable[[np.dtype], list[Row]]:
    def build(dtype) -> list[Row]:
        batch, cin, cout, size, kernel, stride, padding, groups = CONV_CASES[name]
        rng = np.random.default_rng(0)
        conv = ck.nn.Conv2d(cin, cout, kernel, stride, padding, groups=groups, dtype=dtype, rng=rng)
        return layer_rows(name, conv, _randn(rng, (batch, cin, size, size), dtype), rng)

    return build


def maxpool_case(dtype) -> list[Row]:
    """3x3 stride-2 'same' max-pool (TensorFlow's padding: 38 -> 19, -inf row/column at the end)."""
    rng = np.random.default_rng(0)
    pool = ck.nn.MaxPool2d(3, 2, padding="same")
    return layer_rows("maxpool", pool, _randn(rng, (32, 128, 38, 38), dtype), rng)


def named_grads(model: ck.nn.Module, twin: nn.Module):
    """Matching (cnnkit Parameter, torch Parameter) lists, paired by state_dict name."""
    theirs = dict(twin.named_parameters())
    names = [name for name, _ in model.named_parameters()]
    return [p for _, p in model.named_parameters()], [theirs[name] for name in names]


def train_step_pair(model_name: str, batch: int, shape, classes: int, dtype):
    """(model, ours, theirs): one SGD step (lr 0.01, momentum 0.9) of a zoo model and of its
    torch mirror on the same random labelled batch, each returning what the mirror check
    compares (logits, loss, every parameter's gradient)."""
    rng = np.random.default_rng(0)
    model = ck.models.get(model_name, num_classes=classes, in_channels=shape[0], dtype=dtype)
    model.train()
    twin = mirror(model)
    x = _randn(rng, (batch, *shape), dtype)
    labels = rng.integers(0, classes, size=batch).astype(np.int64)
    x_t, labels_t = torch.from_numpy(x), torch.from_numpy(labels)
    loss_fn = ck.nn.CrossEntropyLoss()
    params, twin_params = named_grads(model, twin)
    opt = ck.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    twin_opt = torch.optim.SGD(twin.parameters(), lr=0.01, momentum=0.9)

    def ours():
        logits = model(x)
        loss = loss_fn(logits, labels)
        model.zero_grad()
        with skip_input_gradient(model):  # as cnnkit.train's step; torch's x needs no grad
            model.backward(loss_fn.backward())
        opt.step()
        return [logits, np.asarray(loss), *(p.grad for p in params)]

    def theirs():
        twin_opt.zero_grad()
        logits = twin(x_t)
        loss = F.cross_entropy(logits, labels_t)
        loss.backward()
        twin_opt.step()
        return [logits, loss, *(p.grad for p in twin_params)]

    return model, ours, theirs


def train_step_case(case: str, model_name: str, batch: int, shape, classes: int = 10):
    """The train-step row of :func:`train_step_pair`."""

    def build(dtype) -> list[Row]:
        _, ours, theirs = train_step_pair(model_name, batch, shape, classes, dtype)
        return [Row(case, f"train step b{batch}", ours, theirs)]

    return build


def inference_case(case: str, model_name: str, batch: int, shape, classes: int):
    """Eval-mode forward of a zoo model, both sides under no_grad (no caches kept)."""

    def build(dtype) -> list[Row]:
        rng = np.random.default_rng(0)
        model = ck.models.get(model_name, num_classes=classes, in_channels=shape[0], dtype=dtype)
        model.eval()
        twin = mirror(model)
        x = _randn(rng, (batch, *shape), dtype)
        x_t = torch.from_numpy(x)

        def ours():
            with ck.no_grad():
                return [model(x)]

        def theirs():
            with torch.no_grad():
                return [twin(x_t)]

        return [Row(case, f"inference b{batch}", ours, theirs)]

    return build


TRAIN_STEPS = {"lenet5": (64, (1, 28, 28)), "resnet20": (128, (3, 32, 32))}  # batch, image

CASES: dict[str, Callable[[np.dtype], list[Row]]] = {
    **{name: conv_case(name) for name in CONV_CASES},
    "maxpool": maxpool_case,
    **{name: train_step_case(name, name, *step) for name, step in TRAIN_STEPS.items()},
    "mini_xception": inference_case("mini_xception", "mini_xception", 64, (1, 28, 28), 10),
    "xception": inference_case("xception", "xception", 1, (3, 299, 299), 1000),
}


# --------------------------------------------------------------------------------------------
# Measuring
# --------------------------------------------------------------------------------------------


def as_numpy(value) -> np.ndarray:
    if isinstance(value, torch.Tensor):
        return value.detach().numpy()
    return np.asarray(value)


def mirror_error(ours: list, theirs: list, rtol: float) -> tuple[bool, float]:
    """(all close?, worst max|a - b| / max|b|) over the paired outputs and gradients."""
    if len(ours) != len(theirs):
        return False, float("inf")
    ok, worst = True, 0.0
    for a, b in zip(ours, theirs, strict=True):
        a, b = as_numpy(a), as_numpy(b)
        if a.shape != b.shape:
            return False, float("inf")
        scale = float(np.max(np.abs(b))) if b.size else 0.0
        ok &= bool(np.allclose(a, b, rtol=rtol, atol=rtol * scale))
        worst = max(worst, float(np.max(np.abs(a - b))) / (scale or 1.0) if b.size else 0.0)
    return ok, worst


def settle(timeout: float = 1.0, window: float = 0.005) -> None:
    """Wait (at most ``timeout`` s) until this process stops using CPU.

    After a call, OpenBLAS' worker threads spin for about 0.1 s (2**28 cycles) and OpenMP's
    for a few ms; on a small machine the spinning pool would steal a core from the next call
    of the other library. Waiting until the process CPU time stops growing removes that
    cross-talk without changing how either library runs its own call.
    """
    deadline = time.perf_counter() + timeout
    while time.perf_counter() < deadline:
        cpu = time.process_time()
        time.sleep(window)
        if time.process_time() - cpu < 0.1 * window:
            return


def elapsed_ms(fn: Callable) -> float:
    settle()
    start = time.perf_counter()
    fn()
    return (time.perf_counter() - start) * 1e3


@contextmanager
def quiet_stderr():
    """Silence file descriptor 2 (the profiler's C++ start/stop log lines)."""
    sys.stderr.flush()
    saved = os.dup(2)
    with open(os.devnull, "w") as devnull:
        os.dup2(devnull.fileno(), 2)
    try:
        yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)


def numpy_peak_mib(fn: Callable) -> float:
    """Peak of the bytes allocated during ``fn()`` and alive at once, traced by tracemalloc."""
    gc.collect()
    settle()
    tracemalloc.start()
    try:
        result = fn()  # noqa: F841 - the outputs stay alive until the peak is read
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    return peak / MIB


def torch_peak_mib(fn: Callable) -> float:
    """Same quantity for torch: running sum of the CPU allocator's events while profiling."""
    gc.collect()
    settle()
    activities = [torch.profiler.ProfilerActivity.CPU]
    with quiet_stderr(), torch.profiler.profile(activities=activities, profile_memory=True) as prof:
        result = fn()  # noqa: F841
    events = [e for e in prof.profiler.kineto_results.events() if e.name() == "[memory]"]
    live = peak = 0
    for event in sorted(events, key=lambda e: e.start_ns()):
        live += event.nbytes()
        peak = max(peak, live)
    return peak / MIB


def measure(row: Row, repeats: int, warmup: int) -> None:
    """Mirror check, warm-up, alternating timed calls, then one peak-memory call of each side."""
    ok, err = mirror_error(row.ours(), row.theirs(), RTOL)
    for _ in range(warmup - 1):
        row.ours()
        row.theirs()
    ours_ms, theirs_ms = [], []
    gc.collect()
    for _ in range(repeats):
        ours_ms.append(elapsed_ms(row.ours))
        theirs_ms.append(elapsed_ms(row.theirs))
    ours_median, theirs_median = statistics.median(ours_ms), statistics.median(theirs_ms)
    pair_ratios = sorted(a / b for a, b in zip(ours_ms, theirs_ms, strict=True))
    row.results = {
        "case": row.case,
        "pass": row.kind,
        "cnnkit_ms": ours_median,
        "torch_ms": theirs_median,
        "ratio": ours_median / theirs_median,
        "pair_ratio_quartiles": quartiles(pair_ratios),
        "cnnkit_peak_mib": numpy_peak_mib(row.ours),
        "torch_peak_mib": torch_peak_mib(row.theirs),
        "cnnkit_times_ms": ours_ms,
        "torch_times_ms": theirs_ms,
        "repeats": repeats,
        "warmup": warmup,
        "mirror": "ok" if ok else "mismatch",
        "mirror_max_rel_err": err,
    }


def quartiles(values: list[float]) -> tuple[float, float]:
    """(first, third) quartile of ``values``, both the value itself when there is one."""
    if len(values) == 1:
        return values[0], values[0]
    first, _, third = statistics.quantiles(values, n=4, method="inclusive")
    return first, third


def recheck_in_float64(case: str, rows: list[Row]) -> None:
    """Redo a failed float32 mirror check on float64 copies of the case.

    Deep batch-norm networks amplify float32 rounding in their gradients past rtol 1e-3 even
    when both sides compute the same maths; if the float64 copies agree (rtol 1e-6), the row
    is marked "rounding" rather than "mismatch".
    """
    failed = {row.kind: row for row in rows if row.results["mirror"] != "ok"}
    if not failed:
        return
    for row64 in CASES[case](np.float64):
        if row64.kind in failed:
            ok, err = mirror_error(row64.ours(), row64.theirs(), RTOL_FLOAT64)
            failed[row64.kind].results["mirror"] = "rounding" if ok else "mismatch"
            failed[row64.kind].results["mirror_float64_max_rel_err"] = err


# --------------------------------------------------------------------------------------------
# Report
# --------------------------------------------------------------------------------------------


def cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown CPU"


def blas_info() -> str:
    """NumPy's BLAS (via threadpoolctl) and torch's, as one line."""
    numpy_blas = "unknown"
    try:
        from threadpoolctl import threadpool_info

        for lib in threadpool_info():
            if lib["user_api"] == "blas" and "numpy" in lib["filepath"]:
                numpy_blas = f"{lib['internal_api']} {lib['version']} ({lib['num_threads']} thr)"
    except ImportError:
        pass
    found = re.search(r"BLAS_INFO=(\w+)", torch.__config__.show())
    torch_blas = found.group(1) if found else "unknown"
    mkldnn = ", oneDNN" if torch.backends.mkldnn.is_available() else ""
    return f"numpy BLAS: {numpy_blas}; torch BLAS: {torch_blas}{mkldnn}"


def machine_info(threads: int) -> dict:
    return {
        "cpu": cpu_model(),
        "cores": os.cpu_count(),
        "threads": threads,
        "torch_threads": torch.get_num_threads(),
        "python": platform.python_version(),
        "numpy": np.__version__,
        "torch": torch.__version__,
        "blas": blas_info(),
        "kernels": (
            f"compiled (numba {_compiled.numba.__version__})" if _compiled.ENABLED else "NumPy"
        ),
        "load_avg_start": os.getloadavg(),
    }


FLAGS = {"ok": "", "rounding": " (~)", "mismatch": " (!)"}


def format_table(rows: list[dict]) -> str:
    lines = [
        "| case | pass | cnnkit ms | torch ms | ratio | pair ratios Q1-Q3 | cnnkit peak MiB "
        "| torch peak MiB |",
        "|---|---|---:|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        first, third = r["pair_ratio_quartiles"]
        lines.append(
            f"| {r['case']}{FLAGS[r['mirror']]} | {r['pass']} | {r['cnnkit_ms']:.2f} | "
            f"{r['torch_ms']:.2f} | {r['ratio']:.2f} | {first:.2f}-{third:.2f} | "
            f"{r['cnnkit_peak_mib']:.1f} | {r['torch_peak_mib']:.1f} |"
        )
    return "\n".join(lines)


LEGEND = """\
ratio = median cnnkit / median torch (> 1: cnnkit slower). Times: median of the timed calls,
alternating cnnkit and torch, after warm-up. Pair ratios: cnnkit / torch of each alternated
pair of calls, first to third quartile; they show how much the machine moved during the row.
Peak MiB: highest total of the buffers allocated during one call and alive at once (cnnkit:
tracemalloc; torch: profiler CPU-allocator events); BLAS/oneDNN internal workspaces are not
seen by either. forward rows: torch under no_grad.
Mirror check (outputs and gradients, float32, rtol 1e-3): (~) differs in float32 but float64
copies agree (rtol 1e-6), i.e. rounding; (!) the torch mirror computes something else."""


def mirror_notes(rows: list[dict]) -> list[str]:
    """One line per row whose mirror check failed, or one line saying that all agree."""
    notes = []
    for r in rows:
        where = f"{r['case']} {r['pass']}: float32 max |diff| / max |torch| = "
        if r["mirror"] == "rounding":
            notes.append(
                f"note: {where}{r['mirror_max_rel_err']:.1e}, float64 copies agree to "
                f"{r['mirror_float64_max_rel_err']:.1e} (float32 rounding, same maths)"
            )
        elif r["mirror"] == "mismatch":
            notes.append(
                f"WARNING: {where}{r['mirror_max_rel_err']:.1e}; the torch mirror does not "
                f"compute what cnnkit computes, so this row is not apples to apples"
            )
    if not notes:
        worst = max((r["mirror_max_rel_err"] for r in rows), default=0.0)
        notes.append(
            f"Mirror check: all {len(rows)} rows agree (worst relative error {worst:.1e})."
        )
    return notes


def report(info: dict, command: str, rows: list[dict], seconds: float) -> str:
    head = (
        f"cnnkit vs torch on {info['cpu']}, {info['cores']} cores, {info['threads']} threads; "
        f"python {info['python']}, numpy {info['numpy']}, torch {info['torch']}; {info['blas']}; "
        f"cnnkit kernels: {info['kernels']}; malloc: {info['malloc']}\n"
        f"command: {command}\n"
        f"load average (1, 5, 15 min) at start {fmt_load(info['load_avg_start'])}, "
        f"at end {fmt_load(info['load_avg_end'])}; total {seconds:.0f} s"
    )
    return "\n".join([head, "", format_table(rows), "", LEGEND, *mirror_notes(rows)])


def fmt_load(load) -> str:
    return "/".join(f"{v:.2f}" for v in load)


# --------------------------------------------------------------------------------------------
# Command line
# --------------------------------------------------------------------------------------------


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--cases", default="all", help=f"comma list of {', '.join(CASES)} or all")
    parser.add_argument("--repeats", type=int, default=5, help="timed calls of each side")
    parser.add_argument("--warmup", type=int, default=1, help="untimed calls first (min 1)")
    parser.add_argument("--threads", type=int, default=os.cpu_count(), help="BLAS/torch threads")
    parser.add_argument("--json", metavar="OUT.json", help="also write the results as JSON")
    parser.add_argument("--quick", action="store_true", help="smoke check: 1 timed call each")
    parser.add_argument(
        "--return-freed-memory",
        action="store_true",
        help="leave malloc's defaults (by default freed memory is kept, as `cnnkit train` does)",
    )
    args = parser.parse_args(argv)
    if args.cases == "all":
        args.cases = list(CASES)
    else:
        args.cases = [c.strip() for c in args.cases.split(",") if c.strip()]
        unknown = [c for c in args.cases if c not in CASES]
        if unknown:
            parser.error(f"unknown case(s) {', '.join(unknown)}; known: {', '.join(CASES)}")
    if args.quick:
        args.repeats, args.warmup = 1, 1
    if args.repeats < 1 or args.warmup < 0 or args.threads < 1:
        parser.error("--repeats and --threads must be >= 1, --warmup >= 0")
    args.warmup = max(args.warmup, 1)
    return args


def run(args: argparse.Namespace) -> list[dict]:
    results = []
    for case in args.cases:
        repeats = min(args.repeats, SLOW_CASES.get(case, args.repeats))
        warmup = min(args.warmup, 1) if case in SLOW_CASES else args.warmup
        rows = CASES[case](np.float32)
        for row in rows:
            start = time.perf_counter()
            measure(row, repeats, warmup)
            r = row.results
            print(
                f"  {r['case']:>13} {r['pass']:<18} cnnkit {r['cnnkit_ms']:9.2f} ms  "
                f"torch {r['torch_ms']:8.2f} ms  x{r['ratio']:6.2f}  "
                f"({time.perf_counter() - start:.0f} s)",
                file=sys.stderr,
                flush=True,
            )
        recheck_in_float64(case, rows)
        results += [row.results for row in rows]
        del rows
        gc.collect()
    return results


def main(argv=None) -> None:
    args = parse_args(argv)
    command = "python " + shlex.join(sys.argv if argv is None else ["bench/bench.py", *argv])
    torch.set_num_threads(args.threads)
    kept = not args.return_freed_memory and ck.keep_freed_memory()
    with threadpool_limits(limits=args.threads, user_api="blas"):
        info = machine_info(args.threads)
        info["malloc"] = "freed memory kept (cnnkit.keep_freed_memory)" if kept else "defaults"
        start = time.perf_counter()
        rows = run(args)
        seconds = time.perf_counter() - start
    info["load_avg_end"] = os.getloadavg()
    print(report(info, command, rows, seconds))
    if args.json:
        with open(args.json, "w") as f:
            json.dump(
                {"machine": info, "command": command, "seconds": seconds, "rows": rows}, f, indent=2
            )


if __name__ == "__main__":
    main()
