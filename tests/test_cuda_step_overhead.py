"""The launch- and sync-saving paths of issue 6 on a real GPU (counted without one by
tests/test_launch_trace.py, checked on the CPU by tests/test_step_overhead.py): the
one-reduction range check on CuPy arrays, the loss's mean divided on the device by an int64
count in float32 (``cupy.divide(..., dtype=)``), the split q/k/v whose gradients the native
attention backward writes into one buffer, and the GPT with its positions as a slice.

Marked ``gpu``: skips with the reason elsewhere."""
import numpy as np
import pytest

import pyengine as pe
from pyengine.backend import _glue
from pyengine.models import GPT
from pyengine.nn import functional as F

pytestmark = pytest.mark.gpu


@pytest.mark.parametrize("dtype", [np.int64, np.int32])
@pytest.mark.parametrize("skip", [None, -100, 2])
def test_range_check_on_device_matches_host(rng, provider, dtype, skip):
    cp = pytest.importorskip("cupy")
    for trial in range(12):
        values = rng.integers(-3 if trial % 2 else 0, 9 if trial % 3 else 7, size=(5, 7)).astype(dtype)
        if skip is not None:
            values[1, 2] = skip
        host = _glue.first_out_of_range(values, 7, skip)
        assert _glue.first_out_of_range(cp.asarray(values), 7, skip) == host
        assert _glue.first_out_of_range(cp.asarray(values)[:, ::2], 7, skip) == \
            _glue.first_out_of_range(values[:, ::2], 7, skip)


@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
def test_cross_entropy_and_mse_reductions_on_device_match_cpu(rng, provider, reduction):
    logits = rng.standard_normal((33, 17)).astype(np.float32)
    target = rng.integers(0, 17, 33)
    target[::5] = -100
    a, b = rng.standard_normal((2, 9, 5)).astype(np.float32)
    out = {}
    for device in ("cpu", "cuda"):
        x = pe.tensor(logits, device=device, requires_grad=True)
        ce = F.cross_entropy(x, pe.tensor(target, device=device), reduction=reduction)
        pa = pe.tensor(a, device=device, requires_grad=True)
        mse = F.mse_loss(pa, pe.tensor(b, device=device), reduction=reduction)
        (ce.sum() + mse.sum()).backward()
        assert ce.dtype == mse.dtype == x.grad.dtype == pa.grad.dtype == pe.float32
        out[device] = [t.detach().cpu().numpy() for t in (ce, mse, x.grad, pa.grad)]
    for got, ref in zip(out["cuda"], out["cpu"]):
        np.testing.assert_allclose(got, ref, rtol=1e-5, atol=1e-6)


def test_out_of_range_targets_and_indices_raise_on_device(rng, provider):
    x = pe.tensor(rng.standard_normal((4, 5)).astype(np.float32), device="cuda")
    with pytest.raises(IndexError, match=r"target 5 is out of bounds for 5 classes"):
        F.cross_entropy(x, pe.tensor(np.array([0, 1, 5, -100]), device="cuda"))
    with pytest.raises(IndexError, match=r"target -3 is out of bounds for 5 classes"):
        F.cross_entropy(x, pe.tensor(np.array([0, -3, 4, -100]), device="cuda"))
    w = pe.tensor(rng.standard_normal((6, 3)).astype(np.float32), device="cuda")
    with pytest.raises(IndexError, match=r"index -1 is out of range for weight of shape \(6, 3\)"):
        F.embedding(pe.tensor(np.array([[0, 5], [-1, 2]]), device="cuda"), w)


@pytest.mark.parametrize("b,t,h,d", [(2, 17, 3, 16), (1, 1, 1, 8), (4, 64, 4, 32)])
def test_split_heads_through_attention_on_device_matches_cpu(rng, provider, b, t, h, d):
    data = rng.standard_normal((b, t, 3 * h * d)).astype(np.float32)
    gout = rng.standard_normal((b, h, t, d)).astype(np.float32)
    grads = {}
    for device in ("cpu", "cuda"):
        x = pe.tensor(data, device=device, requires_grad=True)
        q, k, v = F.split_heads(x * 1.0, h)
        y = F.scaled_dot_product_attention(q, k, v, is_causal=True)
        y.backward(pe.tensor(gout, device=device))
        grads[device] = x.grad.cpu().numpy()
    np.testing.assert_allclose(grads["cuda"], grads["cpu"], rtol=1e-4, atol=1e-5)


def test_native_attention_gradients_of_a_split_are_one_buffer(rng):
    cp = pytest.importorskip("cupy")
    from _helpers import cuda_kernels
    from pyengine.backend import _cuda_nn

    with cuda_kernels("native"):
        qkv = cp.asarray(rng.standard_normal((2, 9, 3, 2, 16)).astype(np.float32))
        parts = qkv.transpose(2, 0, 3, 1, 4)
        out, saved = _cuda_nn.sdpa(parts[0], parts[1], parts[2], None, True, None, 0.0)
        gout = cp.asarray(rng.standard_normal(out.shape).astype(np.float32))
        grads = _cuda_nn.sdpa_backward(gout, parts[0], parts[1], parts[2], out, saved, None, True, None, 0.0)
        whole = _glue.stacked_slices(grads)
        assert whole is not None and whole.shape == (3, 2, 2, 9, 16)
        qc, kc, vc = (cp.ascontiguousarray(p) for p in (parts[0], parts[1], parts[2]))
        ref_out, ref_saved = _cuda_nn.sdpa(qc, kc, vc, None, True, None, 0.0)
        ref = _cuda_nn.sdpa_backward(gout, qc, kc, vc, ref_out, ref_saved, None, True, None, 0.0)
        for g, r in zip(grads, ref):
            cp.testing.assert_array_equal(g, r)


@pytest.mark.parametrize("T", [33, 20])  # the whole position table, and a slice of it
def test_gpt_positions_as_a_slice_match_cpu(rng, provider, T):
    cpu = GPT(vocab_size=65, block_size=33, n_layer=2, n_head=4, n_embd=64)
    gpu = GPT(vocab_size=65, block_size=33, n_layer=2, n_head=4, n_embd=64)
    gpu.load_state_dict(cpu.state_dict())
    gpu.to("cuda")
    idx = rng.integers(0, 65, size=(3, T))
    grads = {}
    for model, device in ((cpu, "cpu"), (gpu, "cuda")):
        x = pe.tensor(idx, device=device)
        logits = model(x)
        F.cross_entropy(logits.reshape(-1, 65), x.reshape(-1)).backward()
        grads[device] = {n: p.grad.cpu().numpy() for n, p in model.named_parameters()}
    for name, ref in grads["cpu"].items():
        np.testing.assert_allclose(grads["cuda"][name], ref, rtol=1e-3, atol=1e-4, err_msg=name)
