"""FLOP and byte counts of pyengine.bench.flops against counts made independently: loops
that count every multiply and add, the GEMM shapes of im2col, and PyTorch's FlopCounterMode."""
import itertools

import numpy as np
import pytest

from pyengine.bench import flops as F


def counted_matmul_ops(m, n, k):
    """Multiplies and adds of a schoolbook matmul that accumulates into a zero: counted."""
    ops = 0
    for _i, _j in itertools.product(range(m), range(n)):
        for _ in range(k):
            ops += 2          # one multiply, one add into the accumulator
    return ops


@pytest.mark.parametrize("m, n, k", [(1, 1, 1), (3, 17, 5), (17, 3, 33)])
def test_matmul_flops_count_every_multiply_and_add(m, n, k):
    assert F.matmul_flops(m, n, k) == counted_matmul_ops(m, n, k)
    assert F.matmul_flops(m, n, k, batch=3) == 3 * counted_matmul_ops(m, n, k)
    assert F.matmul_bytes(m, n, k) == 4 * (m * k + k * n + m * n)


def counted_conv_macs(n, c, h, w, k, r, s, stride, pad, groups):
    """Multiply-adds of a direct convolution loop (padding taps included, the usual
    convention): walk every output element and every tap of its group."""
    p = (h + 2 * pad - r) // stride + 1
    q = (w + 2 * pad - s) // stride + 1
    macs = 0
    for _n, ko, _y, _x in itertools.product(range(n), range(k), range(p), range(q)):
        macs += (c // groups) * r * s
    return macs, p, q


@pytest.mark.parametrize("n, c, h, w, k, r, s, stride, pad, groups", [
    (1, 1, 5, 5, 1, 3, 3, 1, 0, 1),
    (2, 3, 7, 9, 5, 3, 2, 2, 1, 1),
    (3, 4, 6, 5, 6, 1, 3, 1, 1, 2),
])
def test_conv2d_flops_match_a_counting_loop(n, c, h, w, k, r, s, stride, pad, groups):
    macs, p, q = counted_conv_macs(n, c, h, w, k, r, s, stride, pad, groups)
    assert (F.conv_out(h, r, stride, pad), F.conv_out(w, s, stride, pad)) == (p, q)
    assert F.conv2d_flops(n, c, k, r, s, p, q, groups) == 2 * macs


def test_conv_out_matches_the_numpy_backend_output_shape(rng):
    from pyengine.backend import numpy_backend as nb

    x = rng.standard_normal((2, 3, 17, 33)).astype(np.float32)
    w = rng.standard_normal((4, 3, 5, 3)).astype(np.float32)
    y = nb.conv2d(x, w, None, (2, 3), (1, 2), (2, 1), 1)
    assert y.shape[2:] == (F.conv_out(17, 5, 2, 1, 2), F.conv_out(33, 3, 3, 2, 1))


def test_attention_flops_are_two_matmuls_and_causal_halves_them():
    b, h, l, s, d = 2, 3, 17, 33, 5
    two_gemms = b * h * (F.matmul_flops(l, s, d) + F.matmul_flops(l, d, s))
    assert F.attention_flops(b, h, l, s, d) == two_gemms
    assert F.attention_flops(b, h, l, s, d, causal=True) == two_gemms / 2
    assert F.attention_bytes(b, h, l, s, d) == 4 * b * h * (2 * l * d + 2 * s * d)


def test_backward_is_two_and_a_half_forward_and_a_step_adds_both():
    assert F.backward_flops(1000) == 2500
    assert F.train_step_flops(1000) == 3500


def test_model_counts_compose_from_their_layers():
    # LeNet-5: conv 1->6 5x5 pad 2 on 28x28, pool, conv 6->16 5x5 on 14x14 -> 10x10, pool,
    # then 400-120-84-10; written out by hand here.
    b = 3
    expected = (2 * b * 6 * 1 * 25 * 28 * 28 + 2 * b * 16 * 6 * 25 * 10 * 10
                + 2 * b * (400 * 120 + 120 * 84 + 84 * 10))
    assert F.lenet5_flops(b) == expected
    # LSTM: per step and layer, four gates of (input + hidden) x hidden multiply-adds.
    assert F.lstm_flops(2, 5, 3, 7, layers=2) == 2 * 2 * 5 * 4 * 7 * (3 + 7) + 2 * 2 * 5 * 4 * 7 * (7 + 7)
    # GPT: per token and layer 12 E^2 multiply-adds, plus causal attention, plus the head.
    bt, t, layers, e, heads, v = 2, 9, 3, 8, 2, 11
    attn = 4 * bt * heads * t * t * (e // heads) / 2
    assert F.gpt_flops(bt, t, layers, e, heads, v) == layers * (2 * bt * t * 12 * e * e + attn) + 2 * bt * t * e * v


@pytest.mark.parametrize("call", [
    lambda: F.matmul_flops(0, 3, 3),
    lambda: F.conv2d_flops(1, 3, 4, 3, 3, 5, 5, groups=2),
    lambda: F.attention_flops(1, 1, 0, 3, 4),
])
def test_bad_sizes_raise_and_name_the_problem(call):
    with pytest.raises(ValueError, match="must be"):
        call()


def test_intensity():
    assert F.intensity(100, 25) == 4
    assert F.intensity(1, 0) == float("inf")


@pytest.mark.torch
def test_counts_agree_with_pytorch_flop_counter():
    torch = pytest.importorskip("torch")
    from torch.utils.flop_counter import FlopCounterMode

    def counted(fn):
        with FlopCounterMode(display=False) as counter:
            fn()
        return counter.get_total_flops()

    a, b = torch.randn(17, 5), torch.randn(5, 33)
    assert counted(lambda: a @ b) == F.matmul_flops(17, 33, 5)
    x, w = torch.randn(3, 4, 17, 13), torch.randn(6, 2, 3, 5)
    y = torch.nn.functional.conv2d(x, w, stride=2, padding=1, groups=2)
    assert counted(lambda: torch.nn.functional.conv2d(x, w, stride=2, padding=1, groups=2)) == \
        F.conv2d_flops(3, 4, 6, 3, 5, y.shape[2], y.shape[3], groups=2)
    lenet = torch.nn.Sequential(
        torch.nn.Conv2d(1, 6, 5, padding=2), torch.nn.ReLU(), torch.nn.MaxPool2d(2),
        torch.nn.Conv2d(6, 16, 5), torch.nn.ReLU(), torch.nn.MaxPool2d(2), torch.nn.Flatten(),
        torch.nn.Linear(400, 120), torch.nn.ReLU(), torch.nn.Linear(120, 84), torch.nn.ReLU(),
        torch.nn.Linear(84, 10))
    images = torch.randn(3, 1, 28, 28)
    assert counted(lambda: lenet(images)) == F.lenet5_flops(3)
