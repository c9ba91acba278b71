"""Max and average pooling, one thread per output element (grid-stride over N*C*Ho*Wo).

Backward kernels also run one thread per output element and scatter into the zeroed input
gradient with atomic adds: overlapping windows (stride < kernel) hit the same input.
"""
import math

from numba import cuda, float32

from . import kernel


@cuda.jit(device=True)
def _nchw(t, y):
    """(n, c, ho, wo) of the flat index t over y's elements."""
    chans, ho_n, wo_n = y.shape[1], y.shape[2], y.shape[3]
    wo = t % wo_n
    ho = (t // wo_n) % ho_n
    c = (t // (wo_n * ho_n)) % chans
    return t // (wo_n * ho_n * chans), c, ho, wo


@kernel("void(float32[:, :, :, :], float32[:, :, :, :], int64[:, :, :, :], "
        "int32, int32, int32, int32, int32, int32, int32, int32)")
def max_forward(x, y, idx, kh, kw, sh, sw, ph, pw, dh, dw):
    h_in, w_in = x.shape[2], x.shape[3]
    t = cuda.grid(1)
    while t < y.size:
        n, c, ho, wo = _nchw(t, y)
        best = float32(-math.inf)
        arg = -1
        for i in range(kh):
            hi = ho * sh - ph + i * dh
            if 0 <= hi < h_in:
                for j in range(kw):
                    wi = wo * sw - pw + j * dw
                    if 0 <= wi < w_in:
                        v = x[n, c, hi, wi]
                        # NaN wins, as in PyTorch; ties keep the first position.
                        if arg < 0 or v > best or v != v:
                            best = v
                            arg = hi * w_in + wi
        y[n, c, ho, wo] = best
        idx[n, c, ho, wo] = arg
        t += cuda.gridsize(1)


@kernel("void(float32[:, :, :, :], int64[:, :, :, :], float32[:, :, :, :])")
def max_backward(gy, idx, gx):
    w_in = gx.shape[3]
    t = cuda.grid(1)
    while t < gy.size:
        n, c, ho, wo = _nchw(t, gy)
        a = idx[n, c, ho, wo]
        cuda.atomic.add(gx, (n, c, a // w_in, a % w_in), gy[n, c, ho, wo])
        t += cuda.gridsize(1)


@cuda.jit(device=True)
def _avg_window(o, s, p, k, size, count_include_pad):
    """(first, end, divisor share) of a window along one axis, PyTorch's rule: the padded
    extent counts up to size + pad, the clipped one only inside the input."""
    start = o * s - p
    end = min(start + k, size + p)
    span = end - start
    first = max(start, 0)
    last = min(end, size)
    return first, last, span if count_include_pad else last - first


@cuda.jit(device=True)
def _avg_window2d(x, ho, wo, kh, kw, sh, sw, ph, pw, count_include_pad, divisor_override):
    """(h0, h1, w0, w1, divisor) of output pixel (ho, wo)'s window over x's plane."""
    h0, h1, hdiv = _avg_window(ho, sh, ph, kh, x.shape[2], count_include_pad)
    w0, w1, wdiv = _avg_window(wo, sw, pw, kw, x.shape[3], count_include_pad)
    div = divisor_override if divisor_override > 0 else float32(hdiv * wdiv)
    # A window wholly in ceil_mode's overhang sums nothing: 0, not 0/0.
    return h0, h1, w0, w1, div if div > 0 else float32(1)


@kernel("void(float32[:, :, :, :], float32[:, :, :, :], int32, int32, int32, int32, int32, int32, "
        "int32, float32)")
def avg_forward(x, y, kh, kw, sh, sw, ph, pw, count_include_pad, divisor_override):
    t = cuda.grid(1)
    while t < y.size:
        n, c, ho, wo = _nchw(t, y)
        h0, h1, w0, w1, div = _avg_window2d(x, ho, wo, kh, kw, sh, sw, ph, pw,
                                            count_include_pad, divisor_override)
        total = float32(0)
        for hi in range(h0, h1):
            for wi in range(w0, w1):
                total += x[n, c, hi, wi]
        y[n, c, ho, wo] = total / div
        t += cuda.gridsize(1)


@kernel("void(float32[:, :, :, :], float32[:, :, :, :], int32, int32, int32, int32, int32, int32, "
        "int32, float32)")
def avg_backward(gy, gx, kh, kw, sh, sw, ph, pw, count_include_pad, divisor_override):
    t = cuda.grid(1)
    while t < gy.size:
        n, c, ho, wo = _nchw(t, gy)
        h0, h1, w0, w1, div = _avg_window2d(gx, ho, wo, kh, kw, sh, sw, ph, pw,
                                            count_include_pad, divisor_override)
        g = gy[n, c, ho, wo] / div
        for hi in range(h0, h1):
            for wi in range(w0, w1):
                cuda.atomic.add(gx, (n, c, hi, wi), g)
        t += cuda.gridsize(1)
