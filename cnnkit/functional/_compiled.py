"""Compiled loops (numba) for the kernels that NumPy can only run as many passes over memory.

Max pooling (adaptive too), depthwise convolution, im2col and col2im touch each input kH*kW
times when written with whole-array NumPy slices (or go through NumPy's general strided copy),
and batch norm makes a temporary for every step of its formulas; these loops visit every value
once per pass. They compute what the NumPy code in pool.py, adaptive_pool.py, conv.py and
norm.py computes (the NumPy code stays the reference: tests/test_compiled.py and
tests/test_pools_torch.py compare the two; batch norm's sums are
accumulated in float64 here), and are used when numba is installed
(``pip install 'cnnkit[fast]'``) unless ``CNNKIT_KERNELS=numpy`` is set.
"""

from __future__ import annotations

import os

import numpy as np

try:
    import numba
except ImportError:  # the NumPy kernels serve alone
    numba = None

ENABLED = numba is not None and os.environ.get("CNNKIT_KERNELS", "auto").lower() != "numpy"


def _compile(function, fastmath=False):
    """numba.njit (cached on disk), or None without numba.

    The loops run on the calling thread: parallel numba threads competed with OpenBLAS' spinning
    worker threads between the GEMMs of a training step and made it slower, not faster. Their
    callers split the batch between Python threads instead (cnnkit.functional._parallel), with
    BLAS on one thread meanwhile; nogil lets those threads run the loops at once.
    """
    if numba is None:
        return None
    return numba.njit(cache=True, fastmath=fastmath, nogil=True)(function)


def _compile_inline(function):
    """A helper loop numba inlines into its callers (numba.njit(inline="always")), so that a
    caller passing one array twice is compiled knowing the two are the same; None without
    numba."""
    if numba is None:
        return None
    return numba.njit(cache=True, inline="always")(function)


def _beats(value, best):
    """Whether a later tap ``value`` takes a max-pool window from ``best``: it is larger, or NaN
    (so the first maximum wins ties and the last NaN wins): PyTorch's CPU rule, pool.py's."""
    return (value != value) | (value > best)


def _phase_span(phase: int, offset: int, stride: int, size: int) -> tuple[int, int, int]:
    """(first s, its phase index, count) of the s < size with (s + offset) % stride == phase."""
    first = (phase - offset) % stride
    if first >= size:
        return first, 0, 0
    return first, (first + offset) // stride, (size - first - 1) // stride + 1


def _max_pool_backward(
    x, dout, kernel_h, kernel_w, stride_h, stride_w, top, left, first_tap, argmax, dx
):
    """argmax = each window's winning tap u * kW + v, and dx[winner] += dout, plane by plane.

    Each plane, padded with -inf, is split into stride_h x stride_w phase planes (row % s_h,
    column % s_w), each flattened with a pitch of P columns; tap (u, v) of output (i, j) is then
    phase (u % s_h, v % s_w) at (i*P + j) + (u // s_h)*P + v // s_w, a constant shift, so the
    winner search and the routing are one long vectorised loop per tap. Ties keep the first
    maximum in row-major tap order, a NaN always wins (the last NaN when there are several),
    and a window of -inf keeps ``first_tap``: pool.max_pool2d's rules.
    """
    n_images, channels, height, width = x.shape
    out_h, out_w = dout.shape[2], dout.shape[3]
    rows = out_h + (kernel_h - 1) // stride_h + 1
    pitch = out_w + (kernel_w - 1) // stride_w + 1
    length = out_h * pitch
    phases = np.full((stride_h, stride_w, rows * pitch), -np.inf, dtype=x.dtype)
    dphases = np.empty((stride_h, stride_w, rows * pitch), dtype=dx.dtype)
    best = np.empty(length, dtype=x.dtype)
    winner = np.empty(length, dtype=np.int32)
    start_tap = np.zeros(length, dtype=np.int32)
    grads = np.zeros(length, dtype=dx.dtype)
    for i in range(out_h):
        start_tap[i * pitch : i * pitch + out_w] = first_tap[i]
    for index in range(n_images * channels):
        n, c = index // channels, index % channels
        _copy_phases(x[n, c], top, left, stride_h, stride_w, pitch, phases, True)
        for i in range(out_h):
            grads[i * pitch : i * pitch + out_w] = dout[n, c, i]
        best[:] = -np.inf
        winner[:] = start_tap
        for u in range(kernel_h):
            for v in range(kernel_w):
                tap = u * kernel_w + v
                source = _tap_plane(phases, u, v, stride_h, stride_w, pitch)
                for q in range(length):
                    value = source[q]
                    better = _beats(value, best[q])
                    best[q] = value if better else best[q]
                    winner[q] = tap if better else winner[q]
        for i in range(out_h):
            argmax[n, c, i] = winner[i * pitch : i * pitch + out_w]
        dphases[:] = 0
        for u in range(kernel_h):
            for v in range(kernel_w):
                tap = u * kernel_w + v
                target = _tap_plane(dphases, u, v, stride_h, stride_w, pitch)
                for q in range(length):
                    target[q] += grads[q] if winner[q] == tap else 0
        dx[n, c] = 0
        _copy_phases(dx[n, c], top, left, stride_h, stride_w, pitch, dphases, False)


def _max_pool_backward_by_window(
    x, dout, kernel_h, kernel_w, stride_h, stride_w, top, left, first_tap, argmax, dx
):
    """_max_pool_backward window by window: the same winners and routing, no per-plane set-up.

    Each window's taps are read in place (a tap in the padding is -inf, which never wins), so
    small planes, where building the phase planes costs more than the windows themselves, pay
    only for their taps; the loops are scalar, as stride-s reads do not vectorise.
    """
    n_images, channels, height, width = x.shape
    out_h, out_w = dout.shape[2], dout.shape[3]
    dx[...] = 0
    for n in range(n_images):
        for c in range(channels):
            plane, grads, target = x[n, c], dout[n, c], dx[n, c]
            for i in range(out_h):
                row0 = i * stride_h - top
                first_u, stop_u = max(0, -row0), min(kernel_h, height - row0)
                for j in range(out_w):
                    column0 = j * stride_w - left
                    first_v, stop_v = max(0, -column0), min(kernel_w, width - column0)
                    best, winner = -np.inf, first_tap[i, j]
                    for u in range(first_u, stop_u):
                        line = plane[row0 + u]
                        for v in range(first_v, stop_v):
                            value = line[column0 + v]
                            if _beats(value, best):
                                best, winner = value, u * kernel_w + v
                    argmax[n, c, i, j] = winner
                    target[row0 + winner // kernel_w, column0 + winner % kernel_w] += grads[i, j]


PAIRS_CHUNK = 1024
"""Windows per chunk of _max_pool_backward_2x2: its four rows of taps (16 KiB in float32) stay
in the L1 cache."""


def _max_pool_backward_2x2(x, dout, argmax, dx):
    """_max_pool_backward for 2x2 windows at stride 2 without padding, vectorised by chunks.

    A window is x[2i, 2j], x[2i, 2j+1], x[2i+1, 2j], x[2i+1, 2j+1], taps 0-3. Chunk by chunk,
    the four taps of every window are copied into four contiguous arrays, the winners are found
    with selects over them (the same rules: first maximum, NaN wins, the last of several NaN),
    the four arrays are overwritten with the gradient routed to each tap, and copied back into
    dx. Without branches on the data this runs 3-5x faster than the general kernels, which
    branch on every comparison. An odd last row or column, in no window, gets a zero gradient.
    """
    n_images, channels, height, width = x.shape
    out_h, out_w = dout.shape[2], dout.shape[3]
    values, grads, winners, dvalues = x.ravel(), dout.ravel(), argmax.ravel(), dx.ravel()
    if height % 2 or width % 2:
        dx[...] = 0
    rows_per_chunk = max(1, PAIRS_CHUNK // out_w)
    size = rows_per_chunk * out_w
    taps = np.empty((4, size), dtype=x.dtype)
    total_rows = n_images * channels * out_h
    for first_row in range(0, total_rows, rows_per_chunk):
        last_row = min(total_rows, first_row + rows_per_chunk)
        count = (last_row - first_row) * out_w
        _move_2x2_taps(values, taps, first_row, last_row, height, width, out_h, out_w, True)
        start = first_row * out_w
        for q in range(count):
            a, b, c, d = taps[0, q], taps[1, q], taps[2, q], taps[3, q]
            later = _beats(b, a)
            best = b if later else a
            winner = np.int32(1) if later else np.int32(0)
            later = _beats(c, best)
            best = c if later else best
            winner = np.int32(2) if later else winner
            later = _beats(d, best)
            winner = np.int32(3) if later else winner
            grad = grads[start + q]
            winners[start + q] = winner
            taps[0, q] = grad if winner == 0 else 0
            taps[1, q] = grad if winner == 1 else 0
            taps[2, q] = grad if winner == 2 else 0
            taps[3, q] = grad if winner == 3 else 0
        _move_2x2_taps(dvalues, taps, first_row, last_row, height, width, out_h, out_w, False)


def _move_2x2_taps(plane_values, taps, first_row, last_row, height, width, out_h, out_w, out):
    """Copy the 2x2 windows of output rows [first_row, last_row) (over all planes) from the flat
    (N*C*H*W) values into taps[tap, window] (``out``), or back."""
    q = 0
    for row in range(first_row, last_row):
        plane, i = row // out_h, row % out_h
        top = plane * height * width + 2 * i * width
        bottom = top + width
        for j in range(out_w):
            if out:
                taps[0, q + j] = plane_values[top + 2 * j]
                taps[1, q + j] = plane_values[top + 2 * j + 1]
                taps[2, q + j] = plane_values[bottom + 2 * j]
                taps[3, q + j] = plane_values[bottom + 2 * j + 1]
            else:
                plane_values[top + 2 * j] = taps[0, q + j]
                plane_values[top + 2 * j + 1] = taps[1, q + j]
                plane_values[bottom + 2 * j] = taps[2, q + j]
                plane_values[bottom + 2 * j + 1] = taps[3, q + j]
        q += out_w


def _adaptive_max_pool(x, row0, row1, col0, col1, out, indices):
    """out[n,c,i,j] = max of x[n, c, row0[i]:row1[i], col0[j]:col1[j]], indices its position
    h*W + w: the first maximum in row-major order, the last NaN, and the bin's first input when
    all are -inf (adaptive_pool.adaptive_max_pool2d's rules), in one pass over each bin."""
    n_images, channels, height, width = x.shape
    for n in range(n_images):
        for c in range(channels):
            plane = x[n, c]
            for i in range(row0.size):
                for j in range(col0.size):
                    best, where = -np.inf, row0[i] * width + col0[j]
                    for h in range(row0[i], row1[i]):
                        line = plane[h]
                        for w in range(col0[j], col1[j]):
                            if _beats(line[w], best):
                                best, where = line[w], h * width + w
                    out[n, c, i, j] = best
                    indices[n, c, i, j] = where


def _tap_plane(phases, u, v, stride_h, stride_w, pitch):
    """Tap (u, v) of every window: phase plane (u % s_h, v % s_w) from (u // s_h)*P + v // s_w."""
    return phases[u % stride_h, v % stride_w, (u // stride_h) * pitch + v // stride_w :]


def _copy_phases(plane, top, left, stride_h, stride_w, pitch, phases, into_phases):
    """Copy an (H, W) plane into its phase planes (into_phases) or back out of them.

    Row r, column s of the plane is phase ((r + top) % s_h, (s + left) % s_w) at
    ((r + top) // s_h) * pitch + (s + left) // s_w; rows and columns past the phases are skipped.
    """
    height, width = plane.shape
    rows = phases.shape[2] // pitch
    for a in range(stride_h):
        for b in range(stride_w):
            first, index, count = _phase_span(b, left, stride_w, width)
            count = min(count, pitch - index)
            if count <= 0:
                continue
            for row in range(rows):
                r = row * stride_h + a - top
                if r < 0 or r >= height:
                    continue
                start = row * pitch + index
                if into_phases:
                    phases[a, b, start : start + count] = plane[r, first::stride_w][:count]
                else:
                    plane[r, first::stride_w][:count] = phases[a, b, start : start + count]


def _depthwise_grid(out_h, out_w, kernel_h, kernel_w, stride_h, stride_w, dil_h, dil_w):
    """(rows, pitch, size, margin) of the phase planes of a depthwise convolution.

    Tap (u, v) of output (i, j) reads the padded input at (i*s_h + u*d_h, j*s_w + v*d_w), which
    is phase plane ((u*d_h) % s_h, (v*d_w) % s_w) at row i + (u*d_h) // s_h, column
    j + (v*d_w) // s_w. Each phase plane has ``rows`` rows of ``pitch`` columns, flattened, with
    a spare row so that every tap's shifted run of out_h * pitch values stays inside it;
    ``margin`` is the largest shift, (u*d_h // s_h) * pitch + v*d_w // s_w.
    """
    reach_h, reach_w = ((kernel_h - 1) * dil_h) // stride_h, ((kernel_w - 1) * dil_w) // stride_w
    pitch = out_w + reach_w
    rows = out_h + reach_h + 1
    return rows, pitch, rows * pitch, reach_h * pitch + reach_w


def _tap_offset(u, v, stride_h, stride_w, dil_h, dil_w, pitch, size):
    """Where tap (u, v)'s run starts in the flat phase planes (phase-major, ``size`` each)."""
    row, column = u * dil_h, v * dil_w
    phase = (row % stride_h) * stride_w + column % stride_w
    return phase * size + (row // stride_h) * pitch + column // stride_w


def _phase_rows(height, width, top, left, stride_h, stride_w, rows, pitch, size):
    """(starts, runs): where each row of an (H, W) plane goes in its flat phase planes.

    Input (r, c) is padded (r + top, c + left): phase ((r + top) % s_h, (c + left) % s_w), at
    row (r + top) // s_h and column (c + left) // s_w of that phase plane. starts[r] is where
    row r's phase row begins (-1 for a row in the spare row, which no window reads); runs[b] is
    (first column, offset from starts[r], count kept) of the columns of phase column b, the
    count cut to the pitch (columns past it are read by no window). Computed once per call, so
    the per-plane copies do no integer division.
    """
    starts = np.full(height, -1, dtype=np.int64)
    for r in range(height):
        padded_row = r + top
        if padded_row // stride_h < rows - 1:
            starts[r] = (padded_row % stride_h) * stride_w * size + (padded_row // stride_h) * pitch
    runs = np.zeros((stride_w, 3), dtype=np.int64)
    for b in range(stride_w):
        first = (b - left) % stride_w
        runs[b, 0] = first
        if first < width:
            column0 = (first + left) // stride_w
            runs[b, 1] = b * size + column0
            runs[b, 2] = max(0, min((width - first - 1) // stride_w + 1, pitch - column0))
    return starts, runs


def _move_phases(plane, starts, runs, phases, into_phases):
    """Copy an (H, W) plane into the flat phase planes (into_phases; padding positions are left
    as they are, zero) or back out of them, zeros where no phase position holds the input,
    by the layout of _phase_rows."""
    height, stride_w = plane.shape[0], runs.shape[0]
    for r in range(height):
        line, start = plane[r], starts[r]
        if start < 0:
            if not into_phases:
                for c in range(line.size):
                    line[c] = 0
            continue
        if stride_w == 2:
            even, odd = (0, 1) if runs[0, 0] == 0 else (1, 0)
            even_run = phases[start + runs[even, 1] : start + runs[even, 1] + runs[even, 2]]
            odd_run = phases[start + runs[odd, 1] : start + runs[odd, 1] + runs[odd, 2]]
            _move_pairs(line, even_run, odd_run, into_phases)
            continue
        for b in range(stride_w):
            first, kept = runs[b, 0], runs[b, 2]
            run = phases[start + runs[b, 1] : start + runs[b, 1] + kept]
            if stride_w == 1:  # contiguous rows: copies that LLVM vectorises
                _copy_run(line[first:], run, kept, into_phases)
            else:
                _copy_run(line[first::stride_w], run, kept, into_phases)


def _move_pairs(line, even_run, odd_run, into_phases):
    """Stride 2 along the width: line[2k] <-> even_run[k] and line[2k + 1] <-> odd_run[k] in one
    loop over the line (LLVM loads it whole and shuffles; a strided copy per phase gathers),
    zeros in the line where a run ends first (out of the phases)."""
    both = min(even_run.size, odd_run.size)
    if into_phases:
        for k in range(both):
            even_run[k] = line[2 * k]
            odd_run[k] = line[2 * k + 1]
        for k in range(both, even_run.size):
            even_run[k] = line[2 * k]
        for k in range(both, odd_run.size):
            odd_run[k] = line[2 * k + 1]
        return
    for k in range(both):
        line[2 * k] = even_run[k]
        line[2 * k + 1] = odd_run[k]
    for j in range(2 * both, line.size):
        k, run = j // 2, even_run if j % 2 == 0 else odd_run
        line[j] = run[k] if k < run.size else 0


def _copy_run(inputs, run, kept, into_phases):
    """run[:kept] = inputs[:kept] (into_phases), or back, and zeros in the rest of inputs."""
    if into_phases:
        for k in range(kept):
            run[k] = inputs[k]
    else:
        for k in range(kept):
            inputs[k] = run[k]
        for k in range(max(kept, 0), inputs.size):
            inputs[k] = 0


def _clamp_row(source, target, shift, shifted, low, high, clamped):
    """target = source (+ shift where ``shifted``), then, where ``clamped``, ``low`` where that
    is <= low, ``high`` where it is >= high (a NaN stays): ReLU's rule with (0, inf), Hardtanh's
    with its bounds. The sum is conv2d's ``out += bias``, rounded alike; ``target`` may be
    ``source`` itself (pass one row twice, as in _affine_row)."""
    for j in range(source.size):
        value = source[j] + shift if shifted else source[j]
        if clamped:
            value = low if value <= low else (high if value >= high else value)
        target[j] = value


def _bias_clamp_in_place(x, bias, shifted, low, high, clamped):
    """x[n, c] = _clamp_row of x[n, c] with shift bias[c], in place, for x of shape (N, C, M)
    and bias (C,) (read only where ``shifted``)."""
    n_images, channels, _ = x.shape
    for n in range(n_images):
        for c in range(channels):
            row = x[n, c]
            _clamp_row(row, row, bias[c], shifted, low, high, clamped)


STACKED_ELEMENTS = 16384


def _stacked_images(n_images, phase_elements):
    """How many images' phase planes of one channel a depthwise loop lays end to end, so that
    each multiply-add runs over all of them at once: as many as fit STACKED_ELEMENTS values
    (64 KiB of float32, in L2), at least one. A 7 x 7 plane's run is 63 values; alone, the loop's
    set-up per plane costs more than its arithmetic."""
    return max(1, min(n_images, STACKED_ELEMENTS // phase_elements))


def _depthwise_forward(
    x, weight, bias, shifted, stride_h, stride_w, dil_h, dil_w, top, left, low, high, clamped, out
):
    """out[n,c,i,j] = sum_{u,v} xpad[n, c, i*s_h + u*d_h, j*s_w + v*d_w] * weight[c, 0, u, v]
    (+ bias[c] where ``shifted``), then, where ``clamped``, min(max(., low), high) by
    _clamp_row's rule.

    Each plane is copied once into its stride_h x stride_w phase planes (_depthwise_grid), where
    every tap is a constant shift of one flat array; the planes of several images of one channel
    (_stacked_images) lie end to end in each phase, and a tap's run never leaves its own image's
    plane (the spare row), so the convolution is a few long multiply-adds over all their
    positions (the rows and columns past the output are dropped), three taps of a kernel row per
    loop, without branches, which LLVM vectorises. Taps are added in the NumPy kernel's order
    (u, then v) to a zero start, so every output is the same sum of the same products as
    conv._depthwise_forward, bit for bit; the bias is added to each finished sum as its plane is
    written out (the same addition as conv2d's ``out += bias``, one pass over the output fewer),
    and so is the clamp of an activation fused into the convolution.
    """
    n_images, channels, height, width = x.shape
    kernel_h, kernel_w = weight.shape[2], weight.shape[3]
    out_h, out_w = out.shape[2], out.shape[3]
    rows, pitch, size, _ = _depthwise_grid(
        out_h, out_w, kernel_h, kernel_w, stride_h, stride_w, dil_h, dil_w
    )
    group = _stacked_images(n_images, stride_h * stride_w * size)
    span = group * size
    starts, runs = _phase_rows(height, width, top, left, stride_h, stride_w, rows, pitch, span)
    phases = np.zeros(stride_h * stride_w * span, dtype=x.dtype)
    total = np.empty((group - 1) * size + out_h * pitch, dtype=x.dtype)
    for index in range(channels * ((n_images + group - 1) // group)):
        c, first = index % channels, (index // channels) * group
        count = min(group, n_images - first)
        for k in range(count):
            plane = phases[k * size :]
            _move_phases(x[first + k, c], starts, runs, plane, True)
        length = (count - 1) * size + out_h * pitch
        taps = weight[c, 0]
        for q in range(length):
            total[q] = 0
        for u in range(kernel_h):
            v = 0
            while v + 3 <= kernel_w:
                a = _tap_offset(u, v, stride_h, stride_w, dil_h, dil_w, pitch, span)
                b = _tap_offset(u, v + 1, stride_h, stride_w, dil_h, dil_w, pitch, span)
                d = _tap_offset(u, v + 2, stride_h, stride_w, dil_h, dil_w, pitch, span)
                wa, wb, wd = taps[u, v], taps[u, v + 1], taps[u, v + 2]
                ra, rb, rd = phases[a : a + length], phases[b : b + length], phases[d : d + length]
                for q in range(length):
                    total[q] = total[q] + ra[q] * wa + rb[q] * wb + rd[q] * wd
                v += 3
            while v < kernel_w:
                a = _tap_offset(u, v, stride_h, stride_w, dil_h, dil_w, pitch, span)
                wa, ra = taps[u, v], phases[a : a + length]
                for q in range(length):
                    total[q] = total[q] + ra[q] * wa
                v += 1
        for k in range(count):
            target = out[first + k, c]
            for i in range(out_h):
                start = k * size + i * pitch
                _clamp_row(
                    total[start : start + out_w], target[i], bias[c], shifted, low, high, clamped
                )


def _depthwise_backward(dout, x, weight, stride_h, stride_w, dil_h, dil_w, top, left, dx, dweight):
    """dx = the adjoint of _depthwise_forward applied to dout; dweight[c,0,u,v] = sum dout * xpad.

    On the same flat phase planes, images of one channel end to end (_stacked_images), with dy
    laid out on their pitch after a zero margin (the largest tap shift; the rows past each
    image's output are zeros, so a shifted read never takes another image's dy):
    dweight[c,0,u,v] is the dot product of dy with tap (u, v)'s run, and each phase plane of
    dxpad gathers dy[p - shift] * weight[c,0,u,v] over the taps that read it, three taps per
    loop. dweight is zero on entry. Compiled with reassociation, so the dot products vectorise:
    sums in another order than NumPy's (float32 parity).
    """
    n_images, channels, height, width = x.shape
    kernel_h, kernel_w = weight.shape[2], weight.shape[3]
    out_h, out_w = dout.shape[2], dout.shape[3]
    rows, pitch, size, margin = _depthwise_grid(
        out_h, out_w, kernel_h, kernel_w, stride_h, stride_w, dil_h, dil_w
    )
    group = _stacked_images(n_images, stride_h * stride_w * size)
    span = group * size
    phases = np.zeros(stride_h * stride_w * span, dtype=x.dtype)
    dphases = np.zeros(stride_h * stride_w * span, dtype=x.dtype)
    grads = np.zeros(margin + span, dtype=x.dtype)
    starts, runs = _phase_rows(height, width, top, left, stride_h, stride_w, rows, pitch, span)
    for index in range(channels * ((n_images + group - 1) // group)):
        c, first = index % channels, (index // channels) * group
        count = min(group, n_images - first)
        for k in range(count):
            _move_phases(x[first + k, c], starts, runs, phases[k * size :], True)
            upstream = dout[first + k, c]
            for i in range(out_h):
                start = margin + k * size + i * pitch
                line, row = upstream[i], grads[start : start + out_w]
                for j in range(out_w):
                    row[j] = line[j]
        length, extent = (count - 1) * size + out_h * pitch, count * size
        taps, upstream_run = weight[c, 0], grads[margin : margin + length]
        for q in range(dphases.size):
            dphases[q] = 0
        for u in range(kernel_h):
            v = 0
            while v + 3 <= kernel_w:
                a = _tap_offset(u, v, stride_h, stride_w, dil_h, dil_w, pitch, span)
                b = _tap_offset(u, v + 1, stride_h, stride_w, dil_h, dil_w, pitch, span)
                d = _tap_offset(u, v + 2, stride_h, stride_w, dil_h, dil_w, pitch, span)
                sa, sb, sd = x.dtype.type(0), x.dtype.type(0), x.dtype.type(0)
                ra, rb, rd = phases[a : a + length], phases[b : b + length], phases[d : d + length]
                for q in range(length):
                    g = upstream_run[q]
                    sa += g * ra[q]
                    sb += g * rb[q]
                    sd += g * rd[q]
                dweight[c, 0, u, v] += sa
                dweight[c, 0, u, v + 1] += sb
                dweight[c, 0, u, v + 2] += sd
                v += 3
            while v < kernel_w:
                a = _tap_offset(u, v, stride_h, stride_w, dil_h, dil_w, pitch, span)
                sa, ra = x.dtype.type(0), phases[a : a + length]
                for q in range(length):
                    sa += upstream_run[q] * ra[q]
                dweight[c, 0, u, v] += sa
                v += 1
        # dxpad at phase position p of the plane holding tap (u, v): dy[p - shift(u, v)]
        for u in range(kernel_h):
            v = 0
            while v + 3 <= kernel_w:
                a = _tap_offset(u, v, stride_h, stride_w, dil_h, dil_w, pitch, span)
                b = _tap_offset(u, v + 1, stride_h, stride_w, dil_h, dil_w, pitch, span)
                d = _tap_offset(u, v + 2, stride_h, stride_w, dil_h, dil_w, pitch, span)
                if a // span == b // span == d // span:  # stride 1 along the width: one plane
                    base = (a // span) * span
                    ga, gb, gd = margin - (a - base), margin - (b - base), margin - (d - base)
                    wa, wb, wd = taps[u, v], taps[u, v + 1], taps[u, v + 2]
                    target = dphases[base : base + extent]
                    ra, rb, rd = grads[ga:], grads[gb:], grads[gd:]
                    for p in range(extent):
                        target[p] += ra[p] * wa + rb[p] * wb + rd[p] * wd
                    v += 3
                    continue
                break
            while v < kernel_w:
                a = _tap_offset(u, v, stride_h, stride_w, dil_h, dil_w, pitch, span)
                base = (a // span) * span
                ga, wa = margin - (a - base), taps[u, v]
                target, ra = dphases[base : base + extent], grads[ga:]
                for p in range(extent):
                    target[p] += ra[p] * wa
                v += 1
        for k in range(count):
            _move_phases(dx[first + k, c], starts, runs, dphases[k * size :], False)


def _im2col(xp, kernel_h, kernel_w, stride_h, stride_w, dilation_h, dilation_w, cols):
    """cols[(c, u, v), (n, i, j)] = xp[n, c, i*s + u*d, j*s + v*d]: conv._im2col for one group.

    The innermost loop copies between row views (plain indices, no offset arithmetic), which
    LLVM turns into vector copies where the stride is 1.
    """
    n_images, channels = xp.shape[0], xp.shape[1]
    taps = kernel_h * kernel_w
    out_w = (xp.shape[3] - dilation_w * (kernel_w - 1) - 1) // stride_w + 1
    out_h = cols.shape[1] // (n_images * out_w)
    span = (out_w - 1) * stride_w + 1
    for row in range(channels * taps):
        c, u, v = row // taps, (row % taps) // kernel_w, row % kernel_w
        for n in range(n_images):
            for i in range(out_h):
                line = xp[n, c, i * stride_h + u * dilation_h]
                source = line[v * dilation_w : v * dilation_w + span : stride_w]
                start = (n * out_h + i) * out_w
                target = cols[row, start : start + out_w]
                for j in range(out_w):
                    target[j] = source[j]


def _col2im(cols, kernel_h, kernel_w, stride_h, stride_w, dilation_h, dilation_w, dxp):
    """dxp (N, C, Hp, Wp) = sum of every column entry at its input position: conv._col2im.

    dxp is zero on entry.
    """
    n_images, channels = dxp.shape[0], dxp.shape[1]
    taps = kernel_h * kernel_w
    out_w = (dxp.shape[3] - dilation_w * (kernel_w - 1) - 1) // stride_w + 1
    out_h = cols.shape[1] // (n_images * out_w)
    span = (out_w - 1) * stride_w + 1
    for c in range(channels):
        for u in range(kernel_h):
            for v in range(kernel_w):
                row = c * taps + u * kernel_w + v
                for n in range(n_images):
                    for i in range(out_h):
                        line = dxp[n, c, i * stride_h + u * dilation_h]
                        target = line[v * dilation_w : v * dilation_w + span : stride_w]
                        start = (n * out_h + i) * out_w
                        source = cols[row, start : start + out_w]
                        for j in range(out_w):
                            target[j] += source[j]


def _channel_square_sums(x, shift, sums):
    """sums[c] = sum over (n, m) of (x[n, c, m] - shift[c])**2, accumulated in float64."""
    n_images, channels, size = x.shape
    for c in range(channels):
        total = 0.0
        for n in range(n_images):
            row = x[n, c]
            for j in range(size):
                centred = row[j] - shift[c]
                total += centred * centred
        sums[c] = total


def _batch_norm_forward(x, mean, inv_std, gamma, beta, out):
    """out = (x - mean) * inv_std * gamma + beta per channel, in one pass."""
    n_images, channels, size = x.shape
    for n in range(n_images):
        for c in range(channels):
            row, result = x[n, c], out[n, c]
            for j in range(size):
                result[j] = (row[j] - mean[c]) * inv_std[c] * gamma[c] + beta[c]


def _affine_row(source, target, factor, offset, relu):
    """target = source * factor + offset, the product rounded before the sum as NumPy's two
    passes of batch norm's eval mode round it, then, where ``relu``, ReLU's max(., 0) (a NaN
    stays). ``target`` may be ``source`` itself (the loop vectorises when the kernel passes
    one row twice; two arrays that merely overlap would make LLVM fall back to scalar code)."""
    for j in range(source.size):
        value = source[j] * factor + offset
        target[j] = 0 if relu and value <= 0 else value


def _scale_shift(x, scale, shift, relu, out):
    """out = _affine_row of x with per-channel scale and shift, (N, C, M) arrays."""
    n_images, channels, _ = x.shape
    for n in range(n_images):
        for c in range(channels):
            _affine_row(x[n, c], out[n, c], scale[c], shift[c], relu)


def _scale_shift_in_place(x, scale, shift, relu):
    """x = _affine_row of x with per-channel scale and shift, written in place."""
    n_images, channels, _ = x.shape
    for n in range(n_images):
        for c in range(channels):
            row = x[n, c]
            _affine_row(row, row, scale[c], shift[c], relu)


def _batch_norm_sums(dout, x, mean, inv_std, sum_dy, sum_dy_xhat):
    """sum_dy[c] = sum dout, sum_dy_xhat[c] = sum dout * x_hat, accumulated in float64, with
    x_hat = (x - mean) * inv_std recomputed as the forward pass computed it."""
    n_images, channels, size = dout.shape
    for c in range(channels):
        first, second = 0.0, 0.0
        for n in range(n_images):
            grad, row = dout[n, c], x[n, c]
            for j in range(size):
                first += grad[j]
                second += grad[j] * ((row[j] - mean[c]) * inv_std[c])
        sum_dy[c], sum_dy_xhat[c] = first, second


def _batch_norm_input_gradient(dout, x, mean, inv_std, mean_dy, mean_dy_xhat, scale, dx):
    """dx = scale * (dout - mean_dy - x_hat * mean_dy_xhat) per channel, in one pass."""
    n_images, channels, size = dout.shape
    for n in range(n_images):
        for c in range(channels):
            grad, row, result = dout[n, c], x[n, c], dx[n, c]
            for j in range(size):
                normalized = (row[j] - mean[c]) * inv_std[c]
                result[j] = (grad[j] - mean_dy[c] - normalized * mean_dy_xhat[c]) * scale[c]


def _batch_norm_relu_forward(x, mean, inv_std, gamma, beta, out):
    """out = relu((x - mean) * inv_std * gamma + beta): _batch_norm_forward's expression, then
    _relu's rule (a NaN stays), in one pass; bit for bit the two unfused kernels."""
    n_images, channels, size = x.shape
    for n in range(n_images):
        for c in range(channels):
            row, result = x[n, c], out[n, c]
            for j in range(size):
                value = (row[j] - mean[c]) * inv_std[c] * gamma[c] + beta[c]
                result[j] = value if (value > 0) | (value != value) else 0


def _relu_gated(grad, row, mean, inv_std, gamma, beta, gated):
    """gated = grad * [bn(row) > 0] (_relu_backward of the mask the fused forward pass saw: the
    same expression, compiled without fast-math flags, so the mask is recomputed exactly)."""
    for j in range(row.size):
        value = (row[j] - mean) * inv_std * gamma + beta
        gated[j] = grad[j] * np.uint8(value > 0)


def _batch_norm_relu_sums(dout, x, mean, inv_std, gamma, beta, sum_dy, sum_dy_xhat):
    """_batch_norm_sums of dy = dout * [bn(x) > 0], the ReLU's mask recomputed from x."""
    n_images, channels, size = dout.shape
    gated = np.empty(size, dtype=dout.dtype)
    for c in range(channels):
        first, second = 0.0, 0.0
        for n in range(n_images):
            row = x[n, c]
            _relu_gated(dout[n, c], row, mean[c], inv_std[c], gamma[c], beta[c], gated)
            for j in range(size):
                first += gated[j]
                second += gated[j] * ((row[j] - mean[c]) * inv_std[c])
        sum_dy[c], sum_dy_xhat[c] = first, second


def _batch_norm_relu_input_gradient(
    dout, x, mean, inv_std, gamma, beta, mean_dy, mean_dy_xhat, scale, dx
):
    """_batch_norm_input_gradient of dy = dout * [bn(x) > 0], in one pass."""
    n_images, channels, size = dout.shape
    for n in range(n_images):
        for c in range(channels):
            grad, row, result = dout[n, c], x[n, c], dx[n, c]
            for j in range(size):
                value = (row[j] - mean[c]) * inv_std[c] * gamma[c] + beta[c]
                gated = grad[j] * np.uint8(value > 0)
                normalized = (row[j] - mean[c]) * inv_std[c]
                result[j] = (gated - mean_dy[c] - normalized * mean_dy_xhat[c]) * scale[c]


PACK_BITS = np.uint64(0x0102040810204080)
"""Times a word of eight 0/1 bytes, bit 56 + k of the product is byte k: the eight flags as one
byte, little-endian (the cross terms fall below bit 56 without carrying, or overflow)."""
SPREAD_BITS = np.uint64(0x0101010101010101)
BIT_OF_EACH_BYTE = np.uint64(0x8040201008040201)
LOW_SEVEN = np.uint64(0x7F7F7F7F7F7F7F7F)
FLAG_CHUNK = 2048
"""Elements whose mask bits relu_backward spreads into bytes at a time (2 KiB: stays in L1; a
multiple of 8, so that a chunk starts on a byte)."""


def _relu_row(values, kept, row_bits):
    """kept = max(values, 0) as np.maximum computes it (a NaN stays) and row_bits the mask
    not values <= 0 (NaN included, as torch's threshold backward lets its gradient through),
    little-endian in each byte (cnnkit.functional._bitmask). Eight flags at a time go into a
    word of bytes, packed into one byte by a multiply (PACK_BITS). ``kept`` may be ``values``
    itself (as in _affine_row, pass one row twice)."""
    count = values.size
    whole = count // 8
    for j in range(whole):
        word = np.uint64(0)
        for k in range(8):
            value = values[8 * j + k]
            keep = not value <= 0
            kept[8 * j + k] = value if keep else 0
            word |= np.uint64(keep) << np.uint64(8 * k)
        row_bits[j] = (word * PACK_BITS) >> np.uint64(56)
    if whole * 8 < count:
        word = np.uint64(0)
        for i in range(whole * 8, count):
            value = values[i]
            keep = not value <= 0
            kept[i] = value if keep else 0
            word |= np.uint64(keep) << np.uint64(i - whole * 8)
        row_bits[whole] = word


def _relu(x, out, bits):
    """_relu_row for each image: out = max(x, 0) and its mask bits, one row of ``bits`` per
    image."""
    rows = bits.shape[0]
    per_row = x.size // rows
    values, result = x.reshape(rows, per_row), out.reshape(rows, per_row)
    packed = bits.reshape(rows, bits.size // rows)
    for n in range(rows):
        _relu_row(values[n], result[n], packed[n])


def _relu_in_place(x, bits):
    """_relu with out = x."""
    rows = bits.shape[0]
    values = x.reshape(rows, x.size // rows)
    packed = bits.reshape(rows, bits.size // rows)
    for n in range(rows):
        row = values[n]
        _relu_row(row, row, packed[n])


def _hardtanh_row(values, low, high, result, mask):
    """result = min(max(values, low), high), _clamp_row's rule (a NaN stays), and mask = not
    (values <= low or values >= high) (NaN included, torch passes its gradient); ``result``
    may be ``values`` itself (as in _affine_row, pass one array twice)."""
    for i in range(values.size):
        value = values[i]
        mask[i] = not ((value <= low) | (value >= high))
        result[i] = low if value <= low else (high if value >= high else value)


def _hardtanh(x, low, high, out, inside):
    """_hardtanh_row over the whole array, one pass."""
    _hardtanh_row(x.ravel(), low, high, out.ravel(), inside.ravel())


def _hardtanh_in_place(x, low, high, inside):
    """_hardtanh with out = x."""
    values = x.ravel()
    _hardtanh_row(values, low, high, values, inside.ravel())


def _relu_backward(dout, bits, dx):
    """dx = dout where the element's bit in ``bits`` (_relu's layout) is set, else +0 (an inf or
    NaN dout included), as torch's threshold backward and activation.relu_backward's NumPy form.
    A chunk's bits are spread into 0/1 bytes first, eight by a multiply and two masks, so that
    the selecting loop vectorises."""
    rows = bits.shape[0]
    per_row = dout.size // rows
    grads, result = dout.reshape(rows, per_row), dx.reshape(rows, per_row)
    packed = bits.reshape(rows, bits.size // rows)
    words = np.empty(FLAG_CHUNK // 8, dtype=np.uint64)
    flags = words.view(np.uint8)
    for n in range(rows):
        row, gated, row_bits = grads[n], result[n], packed[n]
        for start in range(0, per_row, FLAG_CHUNK):
            count = min(FLAG_CHUNK, per_row - start)
            for j in range((count + 7) // 8):
                spread = (np.uint64(row_bits[start // 8 + j]) * SPREAD_BITS) & BIT_OF_EACH_BYTE
                words[j] = ((spread + LOW_SEVEN) >> np.uint64(7)) & SPREAD_BITS
            chunk, into = row[start : start + count], gated[start : start + count]
            for i in range(count):
                into[i] = chunk[i] if flags[i] else 0


_beats = _compile(_beats)
_depthwise_grid = _compile(_depthwise_grid)
_stacked_images = _compile(_stacked_images)
_tap_offset = _compile(_tap_offset)
_copy_run = _compile(_copy_run)
_move_phases = _compile(_move_phases)
_phase_rows = _compile(_phase_rows)
_move_pairs = _compile_inline(_move_pairs)
_phase_span = _compile(_phase_span)
_copy_phases = _compile(_copy_phases)
_tap_plane = _compile(_tap_plane)
max_pool_backward = _compile(_max_pool_backward)
max_pool_backward_by_window = _compile(_max_pool_backward_by_window)
_move_2x2_taps = _compile(_move_2x2_taps)
max_pool_backward_2x2 = _compile(_max_pool_backward_2x2)
adaptive_max_pool = _compile(_adaptive_max_pool)
_clamp_row = _compile_inline(_clamp_row)
bias_clamp_in_place = _compile(_bias_clamp_in_place)
depthwise_forward = _compile(_depthwise_forward)
depthwise_backward = _compile(_depthwise_backward, fastmath={"reassoc"})
im2col = _compile(_im2col)
channel_square_sums = _compile(_channel_square_sums, fastmath={"reassoc"})
batch_norm_forward = _compile(_batch_norm_forward)
_affine_row = _compile_inline(_affine_row)
scale_shift = _compile(_scale_shift)
scale_shift_in_place = _compile(_scale_shift_in_place)
batch_norm_sums = _compile(_batch_norm_sums, fastmath={"reassoc"})
batch_norm_input_gradient = _compile(_batch_norm_input_gradient)
col2im = _compile(_col2im)
_relu_row = _compile_inline(_relu_row)
relu = _compile(_relu)
relu_in_place = _compile(_relu_in_place)
batch_norm_relu_forward = _compile(_batch_norm_relu_forward)
_relu_gated = _compile(_relu_gated)
batch_norm_relu_sums = _compile(_batch_norm_relu_sums, fastmath={"reassoc"})
batch_norm_relu_input_gradient = _compile(_batch_norm_relu_input_gradient)
relu_backward = _compile(_relu_backward)
_hardtanh_row = _compile_inline(_hardtanh_row)
hardtanh = _compile(_hardtanh)
hardtanh_in_place = _compile(_hardtanh_in_place)
