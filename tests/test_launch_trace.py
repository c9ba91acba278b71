"""The host-side cost of a native CUDA training step, counted without a GPU
(pyengine/bench/launch_trace.py: NumPy stands in for CuPy, a fake pyengine._C counts
launches). These pin what the per-step overhead work bought: one optimizer launch for all
parameters, no copy of a fresh parameter gradient, no device sync after the forward pass."""
import numpy as np
import pytest

from contextlib import contextmanager

from pyengine.bench import launch_trace as lt


@contextmanager
def _counting():
    """Counts what the body does on the fake device (arrays made before it are not counted)."""
    stats = lt._Stats()
    lt._STATS = stats
    try:
        yield stats
    finally:
        lt._STATS = None


def test_fake_array_counts_syncs_launches_and_allocations():
    with lt.fake_device() as cp:
        a = cp.asarray(np.arange(6, dtype=np.float32)).reshape(2, 3)
        with _counting() as stats:
            b = a * 2 + 1           # two elementwise launches
            s = b.sum()             # one reduction
            bool(s > 0)             # one launch, one sync
            float(s)                # one sync
            cp.ascontiguousarray(b.T)  # a copy
            cp.ascontiguousarray(b)    # none
    assert sum(stats.syncs.values()) == 2
    assert stats.cupy["multiply"] == 1 and stats.cupy["add"] == 1 and stats.cupy["add.reduce"] == 1
    assert stats.cupy["ascontiguousarray(copy)"] == 1
    assert stats.allocs == 5  # multiply, add, sum, greater, the copy


def test_fake_counts_reductions_called_as_functions():
    # cp.sum(x) reaches the fake through __array_function__, not __array_ufunc__.
    with lt.fake_device() as cp:
        a = cp.asarray(np.arange(6, dtype=np.float32)).reshape(2, 3)
        with _counting() as stats:
            s = cp.sum(a, axis=0)
            cp.max(a)
            a.view(np.int32)  # a reinterpretation: no launch
    assert dict(stats.cupy) == {"sum": 1, "max": 1}, dict(stats.cupy)
    assert stats.allocs == 2
    np.testing.assert_array_equal(np.asarray(s), [3, 5, 7])


@pytest.mark.parametrize("optimizer,kernel", [("sgd", "sgd_step_multi"), ("adam", "adam_step_multi"),
                                              ("adamw", "adam_step_multi")])
def test_one_optimizer_launch_updates_every_parameter(optimizer, kernel):
    res = lt.trace_step("mlp", optimizer)
    kernels = res["stats"].kernels
    assert kernels[kernel] == 1, kernels
    assert kernels["sgd_step"] == kernels["adam_step"] == 0


def test_fresh_parameter_gradients_are_kept_without_a_copy():
    # The MLP's weight and bias gradients come out of a GEMM and a reduction: nothing else
    # holds them, so autograd hands them to .grad as they are (no astype copy per parameter).
    res = lt.trace_step("mlp", "sgd")
    assert res["stats"].cupy["astype"] == 0, res["stats"].cupy  # nor a cast of the loss's count


def test_no_device_sync_after_the_forward_pass():
    """Backward and optimizer step of the GPT never read device data on the host (the
    forward's target and index checks are the functional layer's)."""
    from pyengine.nn import functional as F

    with lt.fake_device():
        step, parts = lt.build_step("gpt-small", "cuda", "adamw", batch=2)
        step()
        parts.opt.zero_grad()
        out = parts.model(parts.xt)
        loss = F.cross_entropy(out.reshape(-1, out.shape[-1]), parts.yt.reshape(-1))
        with _counting() as stats:
            loss.backward()
            parts.opt.step()
    assert not stats.syncs, dict(stats.syncs)
    assert stats.kernels["adam_step_multi"] == 1


def test_leaf_gradients_never_share_memory():
    # Add hands one gradient to both inputs, Reshape a view of its incoming one: the leaves
    # that receive them must get their own copies, since .grad is changed in place later.
    import pyengine as pe

    a = pe.tensor(np.ones((2, 3)), requires_grad=True)
    b = pe.tensor(np.ones((2, 3)), requires_grad=True)
    c = pe.tensor(np.ones(6), requires_grad=True)
    (a + b + c.reshape(2, 3) + a).sum().backward()
    grads = [a.grad.data, b.grad.data, c.grad.data]
    for i in range(3):
        for j in range(i + 1, 3):
            assert not np.shares_memory(grads[i], grads[j])
    np.testing.assert_array_equal(a.grad.numpy(), np.full((2, 3), 2.0))
    w = pe.tensor(np.ones((3, 4)), requires_grad=True)
    x = pe.tensor(np.ones((5, 3)), requires_grad=True)
    y = x @ w
    y.sum().backward()
    w.grad.data[...] = 0  # an optimizer or clip_grad_norm_ changing .grad in place
    np.testing.assert_array_equal(x.grad.numpy(), np.full((5, 3), 4.0))


def test_qkv_views_of_one_buffer_are_copied_once_and_exactly():
    from pyengine.backend import _cuda_nn

    rng = np.random.default_rng(0)
    qkv = rng.standard_normal((2, 5, 3, 4, 8)).astype(np.float32)  # (B, T, 3, H, D), as the GPT's
    with lt.fake_device() as cp:
        parts = cp.asarray(qkv).transpose(2, 0, 3, 1, 4)  # (3, B, H, T, D) views
        q, k, v = parts[0], parts[1], parts[2]
        with _counting() as stats:
            got = _cuda_nn._qkv_contig(q, k, v, (2, 4), "sdpa")
        separate = _cuda_nn._qkv_contig(q, k[:, :, ::-1], v, (2, 4), "sdpa")  # not equally spaced
    assert stats.cupy["ascontiguousarray(copy)"] == 1
    for i, g in enumerate(got):
        assert g.flags.c_contiguous
        np.testing.assert_array_equal(np.asarray(g.view(np.ndarray)), qkv.transpose(2, 0, 3, 1, 4)[i])
    np.testing.assert_array_equal(np.asarray(separate[1].view(np.ndarray)),
                                  qkv.transpose(2, 0, 3, 1, 4)[1][:, :, ::-1])


# Upper bounds of one SGD step (baseline before the cuts of issue 6, same fake device:
# mlp 24 glue launches / 2 syncs, lenet5-small 26 / 2, gpt-small 79 / 4, gpt-issue3 119 / 4).
@pytest.mark.parametrize("model,glue,allocs,syncs", [("mlp", 12, 27, 1), ("lenet5-small", 14, 45, 1),
                                                     ("gpt-small", 40, 117, 2), ("gpt-issue3", 64, 205, 2)])
def test_step_glue_allocation_and_sync_budget(model, glue, allocs, syncs):
    res = lt.trace_step(model, "sgd")
    st = res["stats"]
    assert res["cupy"] <= glue, dict(st.cupy)
    assert res["allocs"] <= allocs
    assert res["syncs"] <= syncs, dict(st.syncs)


def test_cross_entropy_checks_targets_once_and_divides_on_the_device():
    """One class check (three launches: mask, where, max; one sync) instead of two of six
    launches and a sync each; the mean divides by the device count in one launch, forward
    and backward, with no cast; the backward's per-row gradient needs no copy."""
    res = lt.trace_step("mlp", "sgd", sites=True)
    st = res["stats"]
    assert sum(st.syncs.values()) == 1 and all("first_out_of_range" in k for k in st.syncs), dict(st.syncs)
    loss_glue = {k: v for k, v in st.cupy.items() if k != "add.reduce"}  # the 3 bias sums and the loss's
    assert loss_glue == {"not_equal": 2, "where": 1, "maximum.reduce": 1, "divide": 2, "ones": 1}, loss_glue
    assert st.cupy["add.reduce"] == 3 + 2  # biases; the loss's sum and its count of rows
    assert not any("softmax_loss" in k and "ascontiguousarray" in k for k in st.sites), dict(st.sites)


def test_gpt_split_positions_and_checks():
    """Per layer the q/k/v split costs one copy in the backward (the attention backward writes
    the three gradients into one buffer) instead of 3 zero fills, 3 scatters, 2 additions and
    a copy; the positions are a slice of wpe (nothing built, gathered or checked); one index
    check (the tokens) and one class check per step."""
    n_layer = lt.MODELS["gpt-small"][1]["n_layer"]
    res = lt.trace_step("gpt-small", "sgd", sites=True)
    st = res["stats"]
    sites = dict(st.sites)
    assert st.cupy["setitem"] == 0 and st.cupy["zeros"] == 1, dict(st.cupy)  # zeros: wte's gradient
    assert st.cupy["asarray(host->device)"] == 0 and st.cupy["take"] == 1
    split = sum(v for k, v in sites.items() if "heads.py" in k)
    assert split == n_layer, sites
    copies = st.cupy["ascontiguousarray(copy)"] + st.cupy["copy(reshape)"]
    assert copies <= 4 * n_layer, dict(st.cupy)  # q/k/v in, heads out, split grad, attention grad
    assert sum(st.syncs.values()) == 2, dict(st.syncs)
    assert st.calls["SplitHeads"] == n_layer and st.calls["GetItem"] == 0 and st.calls["Embedding"] == 1


def test_native_attention_backward_writes_split_gradients_into_one_buffer():
    from pyengine.backend import _cuda_nn, _glue

    rng = np.random.default_rng(0)
    with lt.fake_device() as cp:
        qkv = cp.asarray(rng.standard_normal((2, 5, 3, 4, 8)).astype(np.float32))
        parts = qkv.transpose(2, 0, 3, 1, 4)
        q, k, v = parts[0], parts[1], parts[2]
        out, saved = _cuda_nn.sdpa(q, k, v, None, True, None, 0.0)
        gout = cp.asarray(rng.standard_normal(out.shape).astype(np.float32))
        fused = _cuda_nn.sdpa_backward(gout, q, k, v, out, saved, None, True, None, 0.0)
        qc, kc, vc = (cp.ascontiguousarray(a) for a in (q, k, v))
        out2, saved2 = _cuda_nn.sdpa(qc, kc, vc, None, True, None, 0.0)
        apart = _cuda_nn.sdpa_backward(gout, qc, kc, vc, out2, saved2, None, True, None, 0.0)
        assert _glue.stacked_slices(fused) is not None
        assert _glue.stacked_slices(apart) is None  # separate inputs keep separate gradients
        assert all(g.shape == q.shape for g in fused + apart)
