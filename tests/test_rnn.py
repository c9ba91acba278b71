"""RNN, LSTM, GRU and their cells: against PyTorch with copied weights, gradcheck of the
hand-written backpropagation through time, and bad-input errors."""
import numpy as np
import pytest

import pyengine as pe
from pyengine import nn
from pyengine.autograd import gradcheck
from pyengine.nn.modules.rnn import _run_recurrence

MODES = {"rnn_tanh": (nn.RNN, {"nonlinearity": "tanh"}), "rnn_relu": (nn.RNN, {"nonlinearity": "relu"}),
         "lstm": (nn.LSTM, {}), "gru": (nn.GRU, {})}


def _copy_from_torch(ours, theirs):
    ours.load_state_dict({k: v.detach().numpy() for k, v in theirs.state_dict().items()})


def _torch_module(torch, mode, **kw):
    name = {"rnn_tanh": "RNN", "rnn_relu": "RNN", "lstm": "LSTM", "gru": "GRU"}[mode]
    return getattr(torch.nn, name)(**MODES[mode][1], **kw)


def _state_grads(hx):
    return [s.grad.detach().numpy() for s in (hx if isinstance(hx, tuple) else (hx,))]


@pytest.mark.torch
@pytest.mark.parametrize("mode", sorted(MODES))
@pytest.mark.parametrize("num_layers,bidirectional,batch_first,bias,T,B", [
    (1, False, False, True, 5, 3),
    (2, True, True, True, 4, 1),
    (2, False, True, False, 1, 3),
    (1, True, False, True, 7, 2),
])
def test_matches_torch(mode, num_layers, bidirectional, batch_first, bias, T, B, rng):
    torch = pytest.importorskip("torch")
    I, H = 7, 5
    kw = dict(input_size=I, hidden_size=H, num_layers=num_layers, bias=bias,
              batch_first=batch_first, bidirectional=bidirectional)
    theirs = _torch_module(torch, mode, **kw).double()
    cls, extra = MODES[mode]
    ours = cls(**kw, **extra).double()
    assert list(ours.state_dict()) == list(theirs.state_dict())
    _copy_from_torch(ours, theirs)

    shape = (B, T, I) if batch_first else (T, B, I)
    x = rng.standard_normal(shape)
    D = 2 if bidirectional else 1
    h0 = rng.standard_normal((num_layers * D, B, H))
    c0 = rng.standard_normal((num_layers * D, B, H))
    gy = rng.standard_normal((*shape[:2], D * H))

    xt = torch.tensor(x, requires_grad=True)
    ht, ct = torch.tensor(h0, requires_grad=True), torch.tensor(c0, requires_grad=True)
    xp = pe.tensor(x, requires_grad=True)
    hp, cp = pe.tensor(h0, requires_grad=True), pe.tensor(c0, requires_grad=True)
    if mode == "lstm":
        yt, (hnt, cnt) = theirs(xt, (ht, ct))
        yp, (hnp, cnp) = ours(xp, (hp, cp))
        np.testing.assert_allclose(cnp.detach().numpy(), cnt.detach().numpy(), rtol=1e-10, atol=1e-12)
        ((yt * torch.tensor(gy)).sum() + hnt.sum() + 2 * cnt.sum()).backward()
        ((yp * pe.tensor(gy)).sum() + hnp.sum() + 2 * cnp.sum()).backward()
        np.testing.assert_allclose(cp.grad.detach().numpy(), ct.grad.detach().numpy(), rtol=1e-9, atol=1e-12)
    else:
        yt, hnt = theirs(xt, ht)
        yp, hnp = ours(xp, hp)
        ((yt * torch.tensor(gy)).sum() + hnt.sum()).backward()
        ((yp * pe.tensor(gy)).sum() + hnp.sum()).backward()
    np.testing.assert_allclose(yp.detach().numpy(), yt.detach().numpy(), rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(hnp.detach().numpy(), hnt.detach().numpy(), rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(xp.grad.detach().numpy(), xt.grad.detach().numpy(), rtol=1e-9, atol=1e-12)
    np.testing.assert_allclose(hp.grad.detach().numpy(), ht.grad.detach().numpy(), rtol=1e-9, atol=1e-12)
    theirs_params = dict(theirs.named_parameters())
    for name, p in ours.named_parameters():
        np.testing.assert_allclose(p.grad.detach().numpy(), theirs_params[name].grad.detach().numpy(),
                                   rtol=1e-9, atol=1e-12, err_msg=name)


@pytest.mark.torch
@pytest.mark.parametrize("mode", sorted(MODES))
def test_float32_default_state_and_unbatched(mode, rng):
    torch = pytest.importorskip("torch")
    theirs = _torch_module(torch, mode, input_size=3, hidden_size=17, num_layers=2)
    cls, extra = MODES[mode]
    ours = cls(3, 17, num_layers=2, **extra)
    _copy_from_torch(ours, theirs)
    for shape in [(6, 2, 3), (6, 3)]:  # batched, then unbatched (T, I)
        x = rng.standard_normal(shape).astype(np.float32)
        yt, st = theirs(torch.tensor(x))
        yp, sp = ours(pe.tensor(x))
        assert yp.dtype == pe.float32 and tuple(yp.shape) == tuple(yt.shape)
        np.testing.assert_allclose(yp.detach().numpy(), yt.detach().numpy(), rtol=1e-5, atol=1e-6)
        for a, b in zip(sp if mode == "lstm" else (sp,), st if mode == "lstm" else (st,)):
            assert tuple(a.shape) == tuple(b.shape)
            np.testing.assert_allclose(a.detach().numpy(), b.detach().numpy(), rtol=1e-5, atol=1e-6)


@pytest.mark.torch
@pytest.mark.parametrize("name", ["RNNCell", "LSTMCell", "GRUCell"])
@pytest.mark.parametrize("batched", [True, False])
def test_cells_match_torch(name, batched, rng):
    torch = pytest.importorskip("torch")
    theirs = getattr(torch.nn, name)(4, 6).double()
    ours = getattr(nn, name)(4, 6).double()
    assert list(ours.state_dict()) == list(theirs.state_dict())
    _copy_from_torch(ours, theirs)
    lead = (3,) if batched else ()
    x = rng.standard_normal(lead + (4,))
    h = rng.standard_normal(lead + (6,))
    c = rng.standard_normal(lead + (6,))
    xt, xp = torch.tensor(x, requires_grad=True), pe.tensor(x, requires_grad=True)
    ht, hp = torch.tensor(h, requires_grad=True), pe.tensor(h, requires_grad=True)
    if name == "LSTMCell":
        (h1t, c1t) = theirs(xt, (ht, torch.tensor(c)))
        (h1p, c1p) = ours(xp, (hp, pe.tensor(c)))
        np.testing.assert_allclose(c1p.detach().numpy(), c1t.detach().numpy(), rtol=1e-10, atol=1e-12)
        (h1t.sum() + (c1t ** 2).sum()).backward()
        (h1p.sum() + (c1p ** 2).sum()).backward()
    else:
        h1t, h1p = theirs(xt, ht), ours(xp, hp)
        (h1t ** 2).sum().backward()
        (h1p ** 2).sum().backward()
    np.testing.assert_allclose(h1p.detach().numpy(), h1t.detach().numpy(), rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(xp.grad.detach().numpy(), xt.grad.detach().numpy(), rtol=1e-9, atol=1e-12)
    np.testing.assert_allclose(hp.grad.detach().numpy(), ht.grad.detach().numpy(), rtol=1e-9, atol=1e-12)


@pytest.mark.parametrize("mode", ["RNN_TANH", "RNN_RELU", "LSTM", "GRU"])
@pytest.mark.parametrize("reverse", [False, True])
@pytest.mark.parametrize("bias", [True, False])
def test_recurrence_gradcheck(mode, reverse, bias, rng):
    """The hand-written BPTT of each recurrence (T = 3, and T = 1: the cells) in float64."""
    gates = {"RNN_TANH": 1, "RNN_RELU": 1, "LSTM": 4, "GRU": 3}[mode]
    B, H = 2, 3
    for T in (3, 1):
        t = lambda *s: pe.tensor(rng.standard_normal(s), dtype=pe.float64, requires_grad=True)  # noqa: E731
        xproj, h0, c0, w = t(T, B, gates * H), t(B, H), t(B, H), t(gates * H, H)
        b = t(gates * H) if bias else None

        def fn(xproj, h0, c0, w, b):
            hx = (h0, c0) if mode == "LSTM" else h0
            out, h, c = _run_recurrence(mode, xproj, hx, w, b, reverse)
            return (out, h) if c is None else (out, h, c)

        assert gradcheck(fn, (xproj, h0, c0, w, b))


@pytest.mark.parametrize("reverse", [False, True])
@pytest.mark.parametrize("bias", [True, False])
def test_lstm_recurrence_with_projection_gradcheck(reverse, bias, rng):
    """The LSTM recurrence with the input projection inside it (w_ih, b_ih given, as the
    modules call it), T = 3 and T = 1, in float64."""
    B, H, n_in = 2, 3, 4
    for T in (3, 1):
        t = lambda *s: pe.tensor(rng.standard_normal(s), dtype=pe.float64, requires_grad=True)  # noqa: E731
        x, h0, c0 = t(T, B, n_in), t(B, H), t(B, H)
        w_ih, w_hh = t(4 * H, n_in), t(4 * H, H)
        b_ih, b_hh = (t(4 * H), t(4 * H)) if bias else (None, None)

        def fn(x, h0, c0, w_ih, w_hh, b_ih, b_hh):
            return _run_recurrence("LSTM", x, (h0, c0), w_hh, b_hh, reverse, w_ih, b_ih)

        assert gradcheck(fn, (x, h0, c0, w_ih, w_hh, b_ih, b_hh))


def test_lstm_state_carries_across_calls(rng):
    """A one-layer LSTM fed its own state in two halves equals one pass over the whole."""
    lstm = nn.LSTM(3, 8, batch_first=True)
    x = pe.tensor(rng.standard_normal((2, 10, 3)).astype(np.float32))
    whole, (h, c) = lstm(x)
    first, state = lstm(x[:, :4])
    second, (h2, c2) = lstm(x[:, 4:], state)
    np.testing.assert_allclose(pe.cat([first, second], dim=1).detach().numpy(), whole.detach().numpy(), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(h2.detach().numpy(), h.detach().numpy(), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(c2.detach().numpy(), c.detach().numpy(), rtol=1e-5, atol=1e-6)


def test_dropout_between_layers_only_in_training(rng):
    gru = nn.GRU(4, 9, num_layers=2, dropout=0.5)
    x = pe.tensor(rng.standard_normal((5, 2, 4)).astype(np.float32))
    gru.eval()
    a, b = gru(x)[0].detach().numpy(), gru(x)[0].detach().numpy()
    np.testing.assert_array_equal(a, b)
    gru.train()
    pe.manual_seed(1)
    c = gru(x)[0].detach().numpy()
    assert not np.allclose(a, c)


def test_parameter_init_range():
    lstm = nn.LSTM(10, 16, num_layers=2, bidirectional=True)
    bound = 1 / np.sqrt(16)
    for name, p in lstm.named_parameters():
        values = p.detach().numpy()
        assert np.abs(values).max() <= bound and values.std() > bound / 4, name
    assert tuple(lstm.weight_ih_l1_reverse.shape) == (64, 32)


def test_bad_inputs():
    lstm = nn.LSTM(7, 5, num_layers=2)
    with pytest.raises(RuntimeError, match=r"input_size.*Expected 7, got 6"):
        lstm(pe.randn(3, 2, 6))
    with pytest.raises(ValueError, match=r"\(2, 3, 4, 7\)"):
        lstm(pe.randn(2, 3, 4, 7))
    h = pe.zeros(1, 2, 5)
    with pytest.raises(RuntimeError, match=r"Expected h_0 size \(2, 2, 5\), got \(1, 2, 5\)"):
        lstm(pe.randn(3, 2, 7), (h, pe.zeros(2, 2, 5)))
    with pytest.raises(TypeError, match="tuple"):
        lstm(pe.randn(3, 2, 7), pe.zeros(2, 2, 5))
    gru = nn.GRU(7, 5, batch_first=True)
    with pytest.raises(RuntimeError, match=r"Expected hx size \(1, 4, 5\), got \(1, 3, 5\)"):
        gru(pe.randn(4, 3, 7), pe.zeros(1, 3, 5))
    cell = nn.GRUCell(4, 6)
    with pytest.raises(RuntimeError, match=r"\(2, 6\).*got \(2, 5\)"):
        cell(pe.randn(2, 4), pe.zeros(2, 5))
    with pytest.raises(RuntimeError, match=r"\(batch, 4\).*got \(2, 3\)"):
        cell(pe.randn(2, 3))
    with pytest.raises(ValueError, match="nonlinearity"):
        nn.RNN(3, 4, nonlinearity="sigmoid")


@pytest.mark.parametrize("cls", [nn.RNN, nn.LSTM, nn.GRU])
def test_input_dtype_must_match_the_weights(cls):
    """As torch: 'input must have the type torch.float32, got type torch.int64' (it was
    NumPy's ufunc casting error from inside the recurrence)."""
    layer = cls(4, 3)
    with pytest.raises(RuntimeError, match=r"float32.*got type.*int64"):
        layer(pe.randint(0, 5, (2, 1, 4)))
    with pytest.raises(RuntimeError, match=r"float32.*got type.*float64"):
        layer(pe.randn(2, 1, 4, dtype=pe.float64))
    assert layer.double()(pe.randn(2, 1, 4, dtype=pe.float64))[0].dtype == pe.float64


@pytest.mark.gpu
@pytest.mark.parametrize("mode", sorted(MODES))
def test_cuda_matches_cpu(mode, rng):
    """The recurrences through the CUDA backend's table give the CPU's outputs and gradients."""
    cls, extra = MODES[mode]
    kw = dict(num_layers=2, bidirectional=True, batch_first=True, **extra)
    cpu, gpu = cls(7, 33, **kw), cls(7, 33, **kw)
    gpu.load_state_dict(cpu.state_dict())
    gpu.to("cuda")
    x = rng.standard_normal((3, 17, 7)).astype(np.float32)
    results = []
    for model, device in ((cpu, "cpu"), (gpu, "cuda")):
        xt = pe.tensor(x, device=device, requires_grad=True)
        y = model(xt)[0]
        assert y.device == device
        (y * y).sum().backward()
        results.append([y.detach().cpu().numpy(), xt.grad.cpu().numpy(),
                        model.weight_hh_l0_reverse.grad.cpu().numpy()])
    for ours, ref in zip(results[1], results[0]):
        np.testing.assert_allclose(ours, ref, rtol=1e-3, atol=1e-4)
