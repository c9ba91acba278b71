"""FLOP and byte counts, the standard way (DESIGN.md, Benchmark rules).

A multiply-add is 2 FLOPs. Backward passes count 2.5x their forward (the usual estimate for
the two gradient GEMMs plus the elementwise work). Bytes are the minimum traffic: every
input read once and every output written once, at the element size given.
"""
from __future__ import annotations

import math

BACKWARD_FACTOR = 2.5


def _positive(**sizes) -> None:
    for name, value in sizes.items():
        if value < 1:
            raise ValueError(f"{name} must be at least 1, got {value}")


def matmul_flops(m: int, n: int, k: int, batch: int = 1) -> int:
    """(m, k) @ (k, n), ``batch`` times: 2*m*n*k each."""
    _positive(m=m, n=n, k=k, batch=batch)
    return 2 * batch * m * n * k


def matmul_bytes(m: int, n: int, k: int, batch: int = 1, itemsize: int = 4) -> int:
    return batch * (m * k + k * n + m * n) * itemsize


def conv_out(size: int, kernel: int, stride: int = 1, padding: int = 0, dilation: int = 1) -> int:
    """Output length of a convolution or pooling window along one axis (floor mode)."""
    return (size + 2 * padding - dilation * (kernel - 1) - 1) // stride + 1


def conv2d_flops(n: int, c: int, k: int, r: int, s: int, p: int, q: int, groups: int = 1) -> int:
    """2*N*K*C*R*S*P*Q/groups: N images, C input and K output channels, an R x S kernel and
    a P x Q output."""
    _positive(n=n, c=c, k=k, r=r, s=s, p=p, q=q, groups=groups)
    if c % groups or k % groups:
        raise ValueError(f"channels in ({c}) and out ({k}) must be divisible by groups ({groups})")
    return 2 * n * k * c * r * s * p * q // groups


def conv2d_bytes(n: int, c: int, h: int, w: int, k: int, r: int, s: int, p: int, q: int,
                 groups: int = 1, itemsize: int = 4) -> int:
    return (n * c * h * w + k * (c // groups) * r * s + k + n * k * p * q) * itemsize


def attention_flops(b: int, h: int, l: int, s: int, d: int, causal: bool = False) -> float:
    """4*B*H*L*S*d (Q K^T and P V), halved when causal (half the scores are masked)."""
    _positive(b=b, h=h, l=l, s=s, d=d)
    f = 4 * b * h * l * s * d
    return f / 2 if causal else f


def attention_bytes(b: int, h: int, l: int, s: int, d: int, itemsize: int = 4) -> int:
    """q and the output (B, H, L, d), k and v (B, H, S, d): a fused kernel's traffic."""
    return b * h * (2 * l * d + 2 * s * d) * itemsize


def elementwise_bytes(numel: int, reads: int = 1, writes: int = 1, itemsize: int = 4) -> int:
    return numel * (reads + writes) * itemsize


def backward_flops(forward: float) -> float:
    return BACKWARD_FACTOR * forward


def train_step_flops(forward: float) -> float:
    """Forward plus backward of one training step (the optimizer's update is negligible)."""
    return forward + backward_flops(forward)


def linear_flops(rows: int, features: tuple[int, ...]) -> int:
    """Forward FLOPs of a stack of Linear layers ``features[0] -> features[1] -> ...``."""
    return sum(2 * rows * a * b for a, b in zip(features, features[1:]))


def lenet5_flops(batch: int) -> int:
    """Forward FLOPs of pyengine.models.LeNet5 on 1x28x28 images (convolutions + linears)."""
    conv1 = conv2d_flops(batch, 1, 6, 5, 5, 28, 28)
    conv2 = conv2d_flops(batch, 6, 16, 5, 5, 10, 10)
    return conv1 + conv2 + linear_flops(batch, (400, 120, 84, 10))


def lstm_flops(batch: int, seq: int, input_size: int, hidden: int, layers: int = 1) -> int:
    """Forward FLOPs of an LSTM: four gates, each an input and a recurrent GEMM, per step."""
    total, inp = 0, input_size
    for _ in range(layers):
        total += 2 * batch * seq * 4 * hidden * (inp + hidden)
        inp = hidden
    return total


def gpt_flops(batch: int, seq: int, n_layer: int, n_embd: int, n_head: int, vocab: int) -> float:
    """Forward FLOPs of pyengine.models.GPT: per block the qkv, output and two MLP GEMMs
    (12*E^2 multiply-adds per token) plus causal attention; then the tied LM head."""
    tokens = batch * seq
    blocks = n_layer * (2 * tokens * 12 * n_embd * n_embd
                        + attention_flops(batch, n_head, seq, seq, n_embd // n_head, causal=True))
    return blocks + 2 * tokens * n_embd * vocab


def intensity(flops: float, nbytes: float) -> float:
    """Arithmetic intensity in FLOP/byte (inf when no bytes move)."""
    return math.inf if nbytes == 0 else flops / nbytes
