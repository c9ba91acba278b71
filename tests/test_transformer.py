"""MultiheadAttention and the Transformer layers against PyTorch with copied weights, the
masks, bad-input errors, and the encoder classifier learning a task."""
import numpy as np
import pytest

import pyengine as pe
from pyengine import nn

TOL = dict(rtol=1e-9, atol=1e-11)


def _copy(ours, theirs):
    assert list(ours.state_dict()) == list(theirs.state_dict())
    ours.load_state_dict({k: v.detach().numpy() for k, v in theirs.state_dict().items()})


def _pair(torch, array):
    return torch.tensor(array, requires_grad=True), pe.tensor(array, requires_grad=True)


def _bool_mask(rng, shape):
    """A random boolean mask with at least one allowed key per row (no all-masked rows)."""
    m = rng.random(shape) < 0.4
    m[..., 0] = False
    return m


@pytest.mark.torch
@pytest.mark.parametrize("batch_first", [False, True])
@pytest.mark.parametrize("need_weights,average", [(True, True), (True, False), (False, True)])
@pytest.mark.parametrize("masks", ["none", "padding_bool", "attn_bool_2d", "both_float_3d"])
def test_mha_self_attention(batch_first, need_weights, average, masks, rng):
    torch = pytest.importorskip("torch")
    E, H, L, N = 12, 3, 5, 2
    theirs = torch.nn.MultiheadAttention(E, H, batch_first=batch_first).double()
    ours = nn.MultiheadAttention(E, H, batch_first=batch_first).double()
    _copy(ours, theirs)
    shape = (N, L, E) if batch_first else (L, N, E)
    xt, xp = _pair(torch, rng.standard_normal(shape))
    kw_t, kw_p = {}, {}
    if masks == "padding_bool":
        m = _bool_mask(rng, (N, L))
        kw_t["key_padding_mask"], kw_p["key_padding_mask"] = torch.tensor(m), pe.tensor(m)
    if masks == "attn_bool_2d":
        m = _bool_mask(rng, (L, L))
        kw_t["attn_mask"], kw_p["attn_mask"] = torch.tensor(m), pe.tensor(m)
    if masks == "both_float_3d":
        a = rng.standard_normal((N * H, L, L))
        p = rng.standard_normal((N, L))
        kw_t.update(attn_mask=torch.tensor(a), key_padding_mask=torch.tensor(p))
        kw_p.update(attn_mask=pe.tensor(a), key_padding_mask=pe.tensor(p))
    yt, wt = theirs(xt, xt, xt, need_weights=need_weights, average_attn_weights=average, **kw_t)
    yp, wp = ours(xp, xp, xp, need_weights=need_weights, average_attn_weights=average, **kw_p)
    np.testing.assert_allclose(yp.detach().numpy(), yt.detach().numpy(), **TOL)
    if need_weights:
        np.testing.assert_allclose(wp.detach().numpy(), wt.detach().numpy(), **TOL)
    else:
        assert wp is None and wt is None
    gy = rng.standard_normal(shape)
    (yt * torch.tensor(gy)).sum().backward()
    (yp * pe.tensor(gy)).sum().backward()
    np.testing.assert_allclose(xp.grad.detach().numpy(), xt.grad.detach().numpy(), **TOL)
    grads = dict(theirs.named_parameters())
    for name, prm in ours.named_parameters():
        np.testing.assert_allclose(prm.grad.detach().numpy(), grads[name].grad.detach().numpy(), err_msg=name, **TOL)


@pytest.mark.torch
@pytest.mark.parametrize("kdim,vdim", [(None, None), (7, 3)])
@pytest.mark.parametrize("batched", [True, False])
def test_mha_cross_attention(kdim, vdim, batched, rng):
    torch = pytest.importorskip("torch")
    E, H, L, S, N = 8, 2, 3, 17, 4
    theirs = torch.nn.MultiheadAttention(E, H, kdim=kdim, vdim=vdim).double()
    ours = nn.MultiheadAttention(E, H, kdim=kdim, vdim=vdim).double()
    _copy(ours, theirs)
    lead_q, lead_k = ((L, N), (S, N)) if batched else ((L,), (S,))
    q = _pair(torch, rng.standard_normal(lead_q + (E,)))
    k = _pair(torch, rng.standard_normal(lead_k + (kdim or E,)))
    v = _pair(torch, rng.standard_normal(lead_k + (vdim or E,)))
    pad = _bool_mask(rng, (N, S) if batched else (S,))
    yt, wt = theirs(q[0], k[0], v[0], key_padding_mask=torch.tensor(pad))
    yp, wp = ours(q[1], k[1], v[1], key_padding_mask=pe.tensor(pad))
    np.testing.assert_allclose(yp.detach().numpy(), yt.detach().numpy(), **TOL)
    np.testing.assert_allclose(wp.detach().numpy(), wt.detach().numpy(), **TOL)
    (yt ** 2).sum().backward()
    (yp ** 2).sum().backward()
    for a, b in (q, k, v):
        np.testing.assert_allclose(b.grad.detach().numpy(), a.grad.detach().numpy(), **TOL)


@pytest.mark.torch
@pytest.mark.filterwarnings("ignore:Support for mismatched src_key_padding_mask")
@pytest.mark.parametrize("norm_first", [False, True])
@pytest.mark.parametrize("activation", ["relu", "gelu"])
@pytest.mark.parametrize("batch_first", [False, True])
def test_encoder_layer_and_stack(norm_first, activation, batch_first, rng):
    torch = pytest.importorskip("torch")
    d, nhead, ff, T, N = 16, 4, 33, 5, 3
    kw = dict(dim_feedforward=ff, dropout=0.0, activation=activation, batch_first=batch_first,
              norm_first=norm_first)
    layer_t = torch.nn.TransformerEncoderLayer(d, nhead, **kw)
    theirs = torch.nn.TransformerEncoder(layer_t, 2, norm=torch.nn.LayerNorm(d),
                                         enable_nested_tensor=False).double()
    ours = nn.TransformerEncoder(nn.TransformerEncoderLayer(d, nhead, **kw), 2,
                                 norm=nn.LayerNorm(d)).double()
    _copy(ours, theirs)
    shape = (N, T, d) if batch_first else (T, N, d)
    xt, xp = _pair(torch, rng.standard_normal(shape))
    pad = _bool_mask(rng, (N, T))
    mask = nn.Transformer.generate_square_subsequent_mask(T, dtype=pe.float64)
    mask_t = torch.nn.Transformer.generate_square_subsequent_mask(T, dtype=torch.float64)
    np.testing.assert_array_equal(mask.detach().numpy(), mask_t.detach().numpy())
    yt = theirs(xt, mask=mask_t, src_key_padding_mask=torch.tensor(pad))
    yp = ours(xp, mask=mask, src_key_padding_mask=pe.tensor(pad))
    np.testing.assert_allclose(yp.detach().numpy(), yt.detach().numpy(), **TOL)
    gy = rng.standard_normal(shape)
    (yt * torch.tensor(gy)).sum().backward()
    (yp * pe.tensor(gy)).sum().backward()
    np.testing.assert_allclose(xp.grad.detach().numpy(), xt.grad.detach().numpy(), rtol=1e-8, atol=1e-10)


@pytest.mark.torch
@pytest.mark.filterwarnings("ignore:enable_nested_tensor is True")
@pytest.mark.parametrize("norm_first", [False, True])
@pytest.mark.parametrize("batch_first", [False, True])
def test_full_transformer(norm_first, batch_first, rng):
    torch = pytest.importorskip("torch")
    d, nhead, S, T, N = 8, 2, 6, 4, 3
    kw = dict(d_model=d, nhead=nhead, num_encoder_layers=2, num_decoder_layers=1,
              dim_feedforward=17, dropout=0.0, batch_first=batch_first, norm_first=norm_first)
    theirs = torch.nn.Transformer(**kw).double()
    ours = nn.Transformer(**kw).double()
    _copy(ours, theirs)
    src = _pair(torch, rng.standard_normal((N, S, d) if batch_first else (S, N, d)))
    tgt = _pair(torch, rng.standard_normal((N, T, d) if batch_first else (T, N, d)))
    src_pad, mem_pad = _bool_mask(rng, (N, S)), _bool_mask(rng, (N, S))
    yt = theirs(src[0], tgt[0], tgt_mask=theirs.generate_square_subsequent_mask(T, dtype=torch.float64),
                src_key_padding_mask=torch.tensor(src_pad), memory_key_padding_mask=torch.tensor(mem_pad))
    yp = ours(src[1], tgt[1], tgt_mask=ours.generate_square_subsequent_mask(T, dtype=pe.float64),
              src_key_padding_mask=pe.tensor(src_pad), memory_key_padding_mask=pe.tensor(mem_pad))
    np.testing.assert_allclose(yp.detach().numpy(), yt.detach().numpy(), **TOL)
    (yt ** 2).sum().backward()
    (yp ** 2).sum().backward()
    for a, b in (src, tgt):
        np.testing.assert_allclose(b.grad.detach().numpy(), a.grad.detach().numpy(), rtol=1e-8, atol=1e-10)


def test_dropout_is_active_only_in_training(rng):
    layer = nn.TransformerEncoderLayer(8, 2, dim_feedforward=16, dropout=0.3, batch_first=True)
    x = pe.tensor(rng.standard_normal((2, 5, 8)).astype(np.float32))
    layer.eval()
    np.testing.assert_array_equal(layer(x).detach().numpy(), layer(x).detach().numpy())
    layer.train()
    assert not np.allclose(layer(x).detach().numpy(), layer(x).detach().numpy())


def test_transformer_init_is_xavier():
    model = nn.Transformer(d_model=32, nhead=4, num_encoder_layers=1, num_decoder_layers=1,
                           dim_feedforward=64)
    w = model.encoder.layers[0].linear1.weight.detach().numpy()  # (64, 32)
    bound = np.sqrt(6 / (64 + 32))
    assert np.abs(w).max() <= bound and w.std() > bound / 3


def test_bad_inputs():
    with pytest.raises(ValueError, match=r"embed_dim \(10\).*num_heads \(3\)"):
        nn.MultiheadAttention(10, 3)
    mha = nn.MultiheadAttention(8, 2, batch_first=True)
    x = pe.randn(2, 5, 8)
    with pytest.raises(RuntimeError, match=r"key_padding_mask of shape \(2, 4\).*\(2, 5\)"):
        mha(x, x, x, key_padding_mask=pe.zeros(2, 4, dtype=pe.bool))
    with pytest.raises(RuntimeError, match=r"attn_mask of shape \(5, 4\).*\(5, 5\)"):
        mha(x, x, x, attn_mask=pe.zeros(5, 4, dtype=pe.bool))
    with pytest.raises(RuntimeError, match=r"query of shape \(2, 5, 7\).*expected 8"):
        mha(pe.randn(2, 5, 7), x, x)
    with pytest.raises(RuntimeError, match=r"batch size.*\(2, 5, 8\).*\(3, 5, 8\)"):
        y = pe.randn(3, 5, 8)
        mha(x, y, y)
    layer = nn.TransformerEncoderLayer(8, 2, dim_feedforward=16)
    with pytest.raises(RuntimeError, match=r"\(5, 2, 6\).*d_model=8"):
        layer(pe.randn(5, 2, 6))
    with pytest.raises(ValueError, match="activation"):
        nn.TransformerEncoderLayer(8, 2, activation="swish")


def test_encoder_classifier_learns_majority():
    from pyengine.data.sequence_tasks import make_majority
    from pyengine.models import EncoderClassifier

    pe.manual_seed(0)
    x, y = make_majority(1200, length=12, vocab=4, seed=3)
    xv, yv = make_majority(400, length=12, vocab=4, seed=4)
    model = EncoderClassifier(vocab_size=4, num_classes=4, d_model=32, nhead=2, num_layers=1,
                              dim_feedforward=64, max_len=12, dropout=0.0)
    opt = pe.optim.Adam(model.parameters(), lr=5e-3)
    rng = np.random.default_rng(0)
    for _ in range(100):
        i = rng.integers(0, len(x), 64)
        loss = nn.functional.cross_entropy(model(pe.tensor(x[i])), pe.tensor(y[i]))
        opt.zero_grad()
        loss.backward()
        opt.step()
    model.eval()
    with pe.no_grad():
        acc = (model(pe.tensor(xv)).argmax(dim=-1).detach().numpy() == yv).mean()
    assert acc >= 0.95, acc


@pytest.mark.gpu
def test_cuda_matches_cpu(rng):
    """An encoder layer with a padding mask, and MHA's weights, on the GPU give the CPU's."""
    kw = dict(dim_feedforward=65, dropout=0.0, batch_first=True, norm_first=True)
    cpu, gpu = nn.TransformerEncoderLayer(32, 4, **kw), nn.TransformerEncoderLayer(32, 4, **kw)
    gpu.load_state_dict(cpu.state_dict())
    gpu.to("cuda")
    x = rng.standard_normal((3, 17, 32)).astype(np.float32)
    pad = _bool_mask(rng, (3, 17))
    results = []
    for layer, device in ((cpu, "cpu"), (gpu, "cuda")):
        xt = pe.tensor(x, device=device, requires_grad=True)
        y = layer(xt, src_key_padding_mask=pe.tensor(pad, device=device))
        (y * y).sum().backward()
        _, w = layer.self_attn(xt, xt, xt, key_padding_mask=pe.tensor(pad, device=device))
        results.append([y.detach().cpu().numpy(), xt.grad.cpu().numpy(), w.detach().cpu().numpy(),
                        layer.self_attn.in_proj_weight.grad.cpu().numpy()])
    for ours, ref in zip(results[1], results[0]):
        np.testing.assert_allclose(ours, ref, rtol=1e-3, atol=1e-4)


def test_encoder_classifier_ignores_padding(rng):
    """Trailing padding is masked from attention and pooling: the logits of a sequence do not
    depend on how much padding follows it."""
    from pyengine.models import EncoderClassifier

    model = EncoderClassifier(vocab_size=9, num_classes=3, d_model=16, nhead=2, num_layers=2,
                              dim_feedforward=33, max_len=12, dropout=0.0, pad_idx=0)
    tokens = rng.integers(1, 9, size=(2, 5))
    short = np.concatenate([tokens, np.zeros((2, 2), dtype=np.int64)], axis=1)
    long = np.concatenate([tokens, np.zeros((2, 6), dtype=np.int64)], axis=1)
    with pe.no_grad():
        a, b = model(pe.tensor(short)).numpy(), model(pe.tensor(long)).numpy()
    assert a.shape == (2, 3)
    np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)
    with pytest.raises(ValueError, match="length 13 exceeds max_len 12"):
        model(pe.zeros(1, 13, dtype=pe.int64))
