"""The recurrent-cell table functions (lstm_cell, gru_cell and their backwards) of the GPU
backends against the NumPy backend run in float64 on the same float32 inputs.

"native" (kernels/rnn.cu) is marked ``gpu`` and skips without one; "numba" is marked
``cudasim`` and runs on the CPU under the Numba simulator (sizes <= 64), or on the GPU with
PYENGINE_DEVICE_TESTS=1. Every output starts as NaN, so an element a kernel forgets stays NaN
and fails. Gate arrays are also passed as a step's slice of a (G, T, B, H) buffer (a gate
stride that is not B*H), and in place where the table allows it (acts = xg, dc_prev = dc,
carry_out = carry).
"""
import numpy as np
import pytest

import pyengine as pe
from pyengine import nn
from pyengine.backend import numpy_backend as ref

RTOL, ATOL = 3e-5, 3e-5
SIZES = [(1, 1), (3, 17), (5, 13), (2, 33)]  # (B, H): B*H <= 165 threads in the simulator
GPU_SIZES = SIZES + [(7, 129), (64, 257), (33, 1023)]


def _native():
    pytest.importorskip("cupy", reason="the native kernels need CuPy")
    from pyengine.backend import cuda_backend
    return cuda_backend


def _numba():
    from pyengine.backend import numba_backend
    ok, reason = numba_backend.available()
    if not ok:
        pytest.skip(reason)
    return numba_backend


BACKENDS = [pytest.param(_native, id="native", marks=pytest.mark.gpu),
            pytest.param(_numba, id="numba", marks=pytest.mark.cudasim)]


@pytest.fixture(params=BACKENDS)
def be(request):
    return request.param()


def _sizes(be):
    return GPU_SIZES if be.name == "native" else SIZES


class Dev:
    """Float32 device arrays of ``be`` from host arrays, and NaN-filled outputs."""

    def __init__(self, be, rng):
        self.be, self.rng = be, rng

    def rand(self, *shape, lo=None):
        a = self.rng.standard_normal(shape).astype(np.float32)
        if lo is not None:  # probabilities / activations: in (lo, 1)
            a = self.rng.uniform(lo, 1, shape).astype(np.float32)
        return a

    def dev(self, a):
        return self.be.asarray(np.ascontiguousarray(a, dtype=np.float32))

    def nan(self, *shape):
        return self.be.asarray(np.full(shape, np.nan, np.float32))

    def slice_of(self, a, T=3, t=1):
        """a (G, B, H) as step t of a NaN-filled (G, T, B, H) device buffer (a view)."""
        buf = np.full((a.shape[0], T) + a.shape[1:], np.nan, np.float32)
        buf[:, t] = a
        return self.dev(buf)[:, t]

    def host(self, a):
        return self.be.to_numpy(a).astype(np.float64)


def _close(got, want):
    assert np.isfinite(got).all(), "an output element was left unwritten (NaN)"
    np.testing.assert_allclose(got, want, rtol=RTOL, atol=ATOL)


@pytest.mark.parametrize("layout", ["fresh", "slice_in_place"])
def test_lstm_cell(be, rng, layout):
    d = Dev(be, rng)
    for B, H in _sizes(be):
        xg, hg, c_prev = d.rand(4, B, H), d.rand(4, B, H), d.rand(B, H)
        want = [np.empty((4, B, H)), np.empty((B, H)), np.empty((B, H)), np.empty((B, H))]
        ref.lstm_cell(xg.astype(np.float64), hg.astype(np.float64), c_prev.astype(np.float64), *want)
        c, tanh_c, h = d.nan(B, H), d.nan(B, H), d.nan(B, H)
        if layout == "fresh":
            xg_d, acts = d.dev(xg), d.nan(4, B, H)
        else:
            xg_d = acts = d.slice_of(xg)
        be.lstm_cell(xg_d, d.dev(hg), d.dev(c_prev), acts, c, tanh_c, h)
        for got, w in zip((acts, c, tanh_c, h), want):
            _close(d.host(got), w)


def _lstm_acts(d, *shape):
    return np.stack([d.rand(*shape, lo=0.05), d.rand(*shape, lo=0.05), np.tanh(d.rand(*shape)),
                     d.rand(*shape, lo=0.05)]).astype(np.float32)


@pytest.mark.parametrize("steps,layout", [(None, "gate_major"), (3, "gate_major"), (3, "step_major")])
def test_lstm_cell_factors(be, rng, steps, layout):
    """One step's (B, H) blocks, or the steps 1.. of a buffer at once: a (4, T, B, H) one
    (gate stride T*B*H, each gate's block of T-1 steps contiguous), or gate-major views of a
    step-major (T, 4, B, H) one (no gate's block contiguous), as the LSTM recurrence calls it."""
    d = Dev(be, rng)
    for B, H in _sizes(be):
        lead = () if steps is None else (steps,)
        acts, c_prev = _lstm_acts(d, *lead, B, H), d.rand(*lead, B, H)
        tanh_c = np.tanh(d.rand(*lead, B, H)).astype(np.float32)
        want_fac, want_k = np.empty(acts.shape), np.empty(c_prev.shape)
        ref.lstm_cell_factors(acts.astype(np.float64), c_prev.astype(np.float64), tanh_c.astype(np.float64),
                              want_fac, want_k)
        if steps is None:
            acts_d, fac, k = d.dev(acts), d.nan(*acts.shape), d.nan(B, H)
        elif layout == "step_major":
            buf = np.full((steps + 1, 4, B, H), np.nan, np.float32)
            buf[1:] = acts.transpose(1, 0, 2, 3)
            acts_d = d.dev(buf)[1:].transpose(1, 0, 2, 3)
            fac = d.dev(np.full((steps + 1, 4, B, H), np.nan, np.float32))[1:].transpose(1, 0, 2, 3)
            k = d.nan(steps, B, H)
        else:
            buf = np.full((4, steps + 1, B, H), np.nan, np.float32)
            buf[:, 1:] = acts
            acts_d = d.dev(buf)[:, 1:]
            fac, k = d.dev(np.full((4, steps + 1, B, H), np.nan, np.float32))[:, 1:], d.nan(steps, B, H)
        be.lstm_cell_factors(acts_d, d.dev(c_prev), d.dev(tanh_c), fac, k)
        _close(d.host(fac), want_fac)
        _close(d.host(k), want_k)


@pytest.mark.parametrize("parts,in_place", [(1, False), (4, False), (4, True)])
def test_lstm_cell_backward(be, rng, parts, in_place):
    d = Dev(be, rng)
    for B, H in _sizes(be):
        fac, f = d.rand(4, B, H), d.rand(B, H, lo=0.05)
        gh, dh_parts, dc, dc_dh = d.rand(B, H), d.rand(parts, B, H), d.rand(B, H), d.rand(B, H)
        f64 = [a.astype(np.float64) for a in (gh, dh_parts, dc, f, fac, dc_dh)]
        want_g, want_dc = np.empty((4, B, H)), np.empty((B, H))
        ref.lstm_cell_backward(*f64, want_g, want_dc)
        if in_place:  # dgates = fac, a step's slice of a (4, T, B, H) buffer
            fac_d = dgates = d.slice_of(fac)
        else:
            fac_d, dgates = d.dev(fac), d.nan(4, B, H)
        dc_prev = d.nan(B, H)
        be.lstm_cell_backward(d.dev(gh), d.dev(dh_parts), d.dev(dc), d.dev(f), fac_d, d.dev(dc_dh), dgates,
                              dc_prev)
        _close(d.host(dgates), want_g)
        _close(d.host(dc_prev), want_dc)


def test_lstm_backward_factors_compose_to_the_gradient(rng):
    """lstm_cell_factors + lstm_cell_backward give dL/d(pre-activations) of one lstm_cell step:
    a float64 finite-difference check on the NumPy reference itself."""
    B, H = 2, 3
    xg, hg, c_prev = rng.standard_normal((4, B, H)), rng.standard_normal((4, B, H)), rng.standard_normal((B, H))
    gh, gc = rng.standard_normal((B, H)), rng.standard_normal((B, H))

    def loss(z):
        acts, c, tc, h = np.empty((4, B, H)), np.empty((B, H)), np.empty((B, H)), np.empty((B, H))
        ref.lstm_cell(z, hg, c_prev, acts, c, tc, h)
        return (gh * h).sum() + (gc * c).sum(), acts, tc

    _, acts, tc = loss(xg)
    fac, k, dgates, dc_prev = np.empty((4, B, H)), np.empty((B, H)), np.empty((4, B, H)), np.empty((B, H))
    ref.lstm_cell_factors(acts, c_prev, tc, fac, k)
    ref.lstm_cell_backward(gh, np.zeros((1, B, H)), gc, acts[1], fac, k, dgates, dc_prev)
    num = np.empty_like(xg)
    for idx in np.ndindex(xg.shape):
        e = np.zeros_like(xg)
        e[idx] = 1e-6
        num[idx] = (loss(xg + e)[0] - loss(xg - e)[0]) / 2e-6
    np.testing.assert_allclose(dgates, num, rtol=1e-6, atol=1e-8)
    np.testing.assert_allclose(dc_prev, (gc + gh * k) * acts[1], rtol=1e-12)


@pytest.mark.parametrize("bias", [True, False])
@pytest.mark.parametrize("layout", ["fresh", "slice_in_place"])
def test_gru_cell(be, rng, bias, layout):
    d = Dev(be, rng)
    for B, H in _sizes(be):
        xg, hg, h_prev = d.rand(3, B, H), d.rand(3, B, H), d.rand(B, H)
        b_hh = d.rand(3 * H) if bias else None
        want = [np.empty((3, B, H)), np.empty((B, H)), np.empty((B, H))]
        ref.gru_cell(xg.astype(np.float64), hg.astype(np.float64),
                     None if b_hh is None else b_hh.astype(np.float64), h_prev.astype(np.float64), *want)
        hn, h = d.nan(B, H), d.nan(B, H)
        if layout == "fresh":
            xg_d, acts = d.dev(xg), d.nan(3, B, H)
        else:
            xg_d = acts = d.slice_of(xg)
        be.gru_cell(xg_d, d.dev(hg), None if b_hh is None else d.dev(b_hh), d.dev(h_prev), acts, hn, h)
        for got, w in zip((acts, hn, h), want):
            _close(d.host(got), w)


@pytest.mark.parametrize("parts,carry,in_place", [(1, False, False), (3, True, False), (3, True, True)])
def test_gru_cell_backward(be, rng, parts, carry, in_place):
    d = Dev(be, rng)
    for B, H in _sizes(be):
        acts = np.stack([d.rand(B, H, lo=0.05), d.rand(B, H, lo=0.05), np.tanh(d.rand(B, H))])
        acts = acts.astype(np.float32)
        gh, dh_parts, hn, h_prev = d.rand(B, H), d.rand(parts, B, H), d.rand(B, H), d.rand(B, H)
        dh_carry = d.rand(B, H) if carry else None
        f64 = lambda a: None if a is None else a.astype(np.float64)  # noqa: E731
        want = [np.empty((3, B, H)), np.empty((3, B, H)), np.empty((B, H))]
        ref.gru_cell_backward(f64(gh), f64(dh_parts), f64(dh_carry), f64(acts), f64(hn), f64(h_prev), *want)
        carry_d = None if dh_carry is None else d.dev(dh_carry)
        if in_place:
            dxg = d.slice_of(np.full((3, B, H), np.nan, np.float32))
            dhg = d.slice_of(np.full((3, B, H), np.nan, np.float32))
            carry_out, acts_d = carry_d, d.slice_of(acts)
        else:
            dxg, dhg, carry_out, acts_d = d.nan(3, B, H), d.nan(3, B, H), d.nan(B, H), d.dev(acts)
        be.gru_cell_backward(d.dev(gh), d.dev(dh_parts), carry_d, acts_d, d.dev(hn), d.dev(h_prev), dxg,
                             dhg, carry_out)
        for got, w in zip((dxg, dhg, carry_out), want):
            _close(d.host(got), w)


def test_bad_shapes_and_dtypes(be, rng):
    d = Dev(be, rng)
    B, H = 2, 3
    g, s = d.nan(4, B, H), d.nan(B, H)
    with pytest.raises(ValueError, match=r"lstm_cell: expected gate arrays \(4, B, H\).*\(4, 2, 3\).*\(2, 4\)"):
        be.lstm_cell(g, g, d.nan(B, H + 1), g, s, s, s)
    with pytest.raises(ValueError, match=r"gru_cell.*bias \(7,\)"):
        be.gru_cell(d.nan(3, B, H), d.nan(3, B, H), d.nan(7), s, d.nan(3, B, H), s, s)
    g64 = be.asarray(np.zeros((4, B, H)), np.float64)
    with pytest.raises(TypeError, match="float32"):
        be.lstm_cell(g64, g, s, g, s, s, s)


@pytest.mark.cudasim
@pytest.mark.parametrize("cls", [nn.LSTM, nn.GRU])
def test_modules_on_the_numba_simulator_match_cpu(cls, rng):
    """The recurrences through the numba provider's cells (simulator on the CPU, or the GPU
    with PYENGINE_DEVICE_TESTS=1): outputs and gradients equal the CPU's, both directions."""
    from pyengine.backend import get_cuda_kernels, set_cuda_kernels
    _numba()
    kw = dict(num_layers=1, bidirectional=True, batch_first=True)
    cpu, dev = cls(3, 5, **kw), cls(3, 5, **kw)
    dev.load_state_dict(cpu.state_dict())
    x = rng.standard_normal((2, 4, 3)).astype(np.float32)
    before = get_cuda_kernels()
    set_cuda_kernels("numba")
    try:
        dev.to("cuda")
        results = []
        for model, device in ((cpu, "cpu"), (dev, "cuda")):
            xt = pe.tensor(x, device=device, requires_grad=True)
            y = model(xt)[0]
            (y * y).sum().backward()
            results.append([y.detach().cpu().numpy(), xt.grad.cpu().numpy(),
                            model.weight_hh_l0.grad.cpu().numpy(), model.bias_hh_l0_reverse.grad.cpu().numpy()])
    finally:
        set_cuda_kernels(before)
    for got, want in zip(results[1], results[0]):
        np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-5)
