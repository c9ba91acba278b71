"""Run every native kernel once at odd sizes, for compute-sanitizer (memcheck, racecheck);
the LSTM/GRU step kernels and the multi-tensor optimizers through the modules.

    compute-sanitizer --tool memcheck --error-exitcode 9 python3 bench/gpu_smoke.py

CuPy's memory pool is switched off first: pooled arrays sit inside larger allocations, where
an out-of-bounds access would go unnoticed; with plain cudaMalloc per array memcheck sees
every byte past an array's end. Exits 1 if any call raises (each failure is printed).
"""
from __future__ import annotations

import sys
import traceback

import cupy as cp

import pyengine as pe
from pyengine.backend import cuda_backend as cb


def randn(*shape):
    return cp.random.standard_normal(shape, dtype=cp.float32)


def core_calls():
    """(name, thunk) for each core kernel: every matmul layout and epilogue, TF32, conv
    forward/backward (split-K too), pooling, activations."""
    a, b = randn(17, 33), randn(33, 65)
    at, bt = randn(33, 17).T, randn(65, 33).T
    x, w, bias = randn(3, 4, 17, 19), randn(6, 2, 3, 3), randn(6)
    conv_args = ((2, 1), (1, 2), (1, 2), 2)
    y = cb.conv2d(x, w, bias, *conv_args)
    big_x, big_w = randn(8, 8, 33, 33), randn(16, 8, 3, 3)
    px = randn(2, 3, 17, 33)
    pooled, idx = cb.max_pool2d(px, (3, 3), (2, 2), (1, 1), (1, 1), True)
    avg_args = ((3, 3), (2, 2), (1, 1), True, False, None)
    calls = [
        ("matmul NN", lambda: cb.matmul(a, b)),
        ("matmul NT", lambda: cb.matmul(a, bt)),
        ("matmul TN", lambda: cb.matmul(at, b)),
        ("matmul TT", lambda: cb.matmul(at, bt)),
        ("matmul batched broadcast", lambda: cb.matmul(randn(3, 1, 17, 9), randn(1, 2, 9, 33))),
        ("matmul misaligned", lambda: cb.matmul(randn(17 * 33 + 1)[1:].reshape(17, 33), b)),
    ]
    calls += [(f"linear {act}", lambda act=act: cb.linear(randn(5, 33), randn(17, 33), randn(17), act))
              for act in (None, "relu", "gelu", "gelu_tanh")]

    def tf32(fn):
        def run():
            pe.backends.cuda.matmul.allow_tf32 = True
            try:
                return fn()
            finally:
                pe.backends.cuda.matmul.allow_tf32 = False
        return run

    calls += [
        ("tf32 matmul NN", tf32(lambda: cb.matmul(a, b))),
        ("tf32 matmul TN", tf32(lambda: cb.matmul(at, bt))),
        ("tf32 linear gelu", tf32(lambda: cb.linear(randn(129, 65), randn(33, 65), randn(33), "gelu"))),
        ("conv2d forward", lambda: cb.conv2d(x, w, bias, *conv_args)),
        ("conv2d backward", lambda: cb.conv2d_backward(randn(*y.shape), x, w, *conv_args)),
        ("conv2d backward split-K", lambda: cb.conv2d_backward(randn(8, 16, 33, 33), big_x, big_w, (1, 1), (1, 1),
                                                               (1, 1), 1)),
        ("max_pool2d", lambda: cb.max_pool2d(px, (3, 3), (2, 2), (1, 1), (1, 1), True)),
        ("max_pool2d backward", lambda: cb.max_pool2d_backward(randn(*pooled.shape), idx, px.shape)),
        ("avg_pool2d", lambda: cb.avg_pool2d(px, *avg_args)),
        ("avg_pool2d backward", lambda: cb.avg_pool2d_backward(randn(2, 3, 9, 17), px.shape, *avg_args)),
    ]
    for name, param in (("relu", None), ("leaky_relu", 0.1), ("gelu", "none"), ("gelu", "tanh"),
                        ("sigmoid", None), ("tanh", None), ("selu", None)):
        for n in (1031, 1030):  # vector body + scalar tail, and an odd start through a view
            v = randn(n + 1)[1:] if n % 2 == 0 else randn(n)
            calls.append((f"{name} {param} n={n}", lambda v=v, name=name, param=param: cb.activation_backward(
                name, randn(*v.shape), v, cb.activation(name, v, param), param)))
    return calls


def nn_calls():
    """(name, thunk) for the CUDA-nn engineer's kernels, reached through the same table."""
    x = randn(17, 33)
    tgt = cp.random.randint(0, 33, 17).astype(cp.int64)
    q, k, v = randn(2, 3, 17, 16), randn(2, 3, 33, 16), randn(2, 3, 33, 16)
    w, bvec = randn(33), randn(33)
    p, g, m, s = randn(1031), randn(1031), randn(1031), cp.abs(randn(1031))

    def attention(causal):
        out, saved = cb.sdpa(q, k, v, None, causal, None, 0.0)
        return cb.sdpa_backward(randn(*out.shape), q, k, v, out, saved, None, causal, None, 0.0)

    def layer_norm():
        y, mean, rstd = cb.layer_norm(x, w, bvec, 1e-5)
        return cb.layer_norm_backward(randn(*y.shape), x, w, mean, rstd)

    def cross_entropy():
        loss, lse = cb.cross_entropy(x, tgt, -100, 0.1)
        return cb.cross_entropy_backward(randn(17), x, tgt, lse, -100, 0.1)

    return [
        ("softmax", lambda: cb.softmax_backward(randn(17, 33), cb.softmax(x, -1), -1)),
        ("log_softmax", lambda: cb.softmax_backward(randn(17, 33), cb.softmax(x, 0, True), 0, True)),
        ("cross_entropy", cross_entropy),
        ("layer_norm", layer_norm),
        ("sdpa", lambda: attention(False)),
        ("sdpa causal", lambda: attention(True)),
        ("sgd_step", lambda: cb.sgd_step(p, g, m, 1e-2, 0.9, 0.0, True, 1e-4, False)),
        ("adam_step", lambda: cb.adam_step(p, g, m, s, None, 3, 1e-3, 0.9, 0.999, 1e-8, 1e-2, True, False)),
    ]


def model_calls(device: str = "cuda"):
    """(name, thunk) through the modules, for the kernels only they reach: the fused LSTM/GRU
    step kernels (forward and backward) and the multi-tensor optimizer launches."""
    from pyengine import nn, optim

    def recurrent(kind):
        pe.manual_seed(0)
        m = getattr(nn, kind)(7, 13, num_layers=2, batch_first=True, bidirectional=True).to(device)
        x = pe.randn(3, 5, 7, device=device, requires_grad=True)
        m(x)[0].sum().backward()

    def step(cls, **kw):
        params = [pe.randn(n, device=device, requires_grad=True) for n in (1, 17, 1031, 4099)]
        opt = cls(params, lr=1e-2, **kw)
        for _ in range(2):
            opt.zero_grad()
            sum((q * q).sum() for q in params).backward()
            opt.step()

    return [
        ("LSTM forward+backward", lambda: recurrent("LSTM")),
        ("GRU forward+backward", lambda: recurrent("GRU")),
        ("SGD nesterov multi-tensor", lambda: step(optim.SGD, momentum=0.9, nesterov=True, weight_decay=1e-4)),
        ("AdamW multi-tensor", lambda: step(optim.AdamW, weight_decay=1e-2)),
        ("Adam amsgrad multi-tensor", lambda: step(optim.Adam, amsgrad=True)),
    ]


def main() -> int:
    ok, reason = cb.available()
    if not ok:
        print(f"gpu_smoke: native kernels unavailable: {reason}")
        return 2
    cp.cuda.set_allocator(None)
    failures = 0
    for group in (core_calls, nn_calls, model_calls):
        try:
            calls = group()
        except Exception:
            print(f"FAIL setting up {group.__name__}")
            traceback.print_exc()
            failures += 1
            continue
        for name, fn in calls:
            try:
                fn()
                cp.cuda.Device().synchronize()
                print(f"ok   {name}")
            except Exception:
                failures += 1
                print(f"FAIL {name}")
                traceback.print_exc()
    print(f"gpu_smoke: {failures} failure(s)")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
