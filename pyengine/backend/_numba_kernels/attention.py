"""Scaled dot-product attention: online-softmax (flash) forward, backward recomputing the
probabilities from the saved row log-sum-exp.

Layout: q (Z, L, E), k (Z, S, E), v (Z, S, Ev) with Z the flattened batch*heads; bias
(Zb, L, S) additive (0 / -inf / float, Zb = 1 or Z) when has_bias; causal masks key j > i
(top-left aligned, as PyTorch). Head dims up to MAX_D.

Forward: one thread per query row, a block of QB rows shares each KT-key tile of k and v in
shared memory; the thread keeps its running max m, sum l and unnormalised output in
registers and rescales them by exp(m_old - m_new) as each key arrives, so the (L, S) score
matrix never exists. Backward: one thread per query row for dq (and the row's
delta = gout . out), then one thread per key for dk and dv, each looping over the other
side and recomputing p = exp(s - lse).
"""
import math

from numba import cuda, float32

from . import kernel

QB = 32
KT = 32
MAX_D = 128

_SIG3 = "float32[:, :, :]"


@cuda.jit(device=True)
def _score(q_row, k_row, e, scale, bias, zb, i, j, has_bias):
    """The scaled, biased score of query i (q_row) against key j (k_row)."""
    s = float32(0)
    for c in range(e):
        s += q_row[c] * k_row[c]
    s *= scale
    if has_bias:
        s += bias[zb, i, j]
    return s


@cuda.jit(device=True)
def _backward_thread(bias):
    """(z, zb, t) of a backward thread: its batch*head, the bias's (1 when broadcast) and
    its row, a query in backward_query, a key in backward_key."""
    z = cuda.blockIdx.y
    return z, z if bias.shape[0] > 1 else 0, cuda.blockIdx.x * cuda.blockDim.x + cuda.threadIdx.x


@kernel(f"void({_SIG3}, {_SIG3}, {_SIG3}, {_SIG3}, int32, int32, float32, {_SIG3}, float32[:, :])")
def forward(q, k, v, bias, has_bias, causal, scale, out, lse):
    sk = cuda.shared.array((KT, MAX_D), float32)
    sv = cuda.shared.array((KT, MAX_D), float32)
    q_row = cuda.local.array(MAX_D, float32)
    acc = cuda.local.array(MAX_D, float32)
    tid = cuda.threadIdx.x
    z = cuda.blockIdx.y
    zb = z if bias.shape[0] > 1 else 0
    i = cuda.blockIdx.x * QB + tid
    length, e = q.shape[1], q.shape[2]
    s_len, ev = k.shape[1], v.shape[2]
    live = i < length
    width = max(e, ev)
    for c in range(e):
        q_row[c] = q[z, i, c] * scale if live else float32(0)
    for c in range(ev):
        acc[c] = float32(0)
    m = float32(-math.inf)
    l = float32(0)
    for s0 in range(0, s_len, KT):
        # Whole block stages the key tile; rows past the end are zero and never read.
        for t in range(tid, KT * width, QB):
            r = t // width
            c = t % width
            inside = s0 + r < s_len
            sk[r, c] = k[z, s0 + r, c] if inside and c < e else float32(0)
            sv[r, c] = v[z, s0 + r, c] if inside and c < ev else float32(0)
        cuda.syncthreads()
        if live:
            for jj in range(min(KT, s_len - s0)):
                j = s0 + jj
                if causal and j > i:
                    break
                s = float32(0)
                for c in range(e):
                    s += q_row[c] * sk[jj, c]
                if has_bias:
                    s += bias[zb, i, j]
                if s == float32(-math.inf):
                    continue               # a masked key adds nothing (and exp(-inf - -inf) is NaN)
                m_new = max(m, s)
                corr = math.exp(m - m_new)
                p = math.exp(s - m_new)
                l = l * corr + p
                for c in range(ev):
                    acc[c] = acc[c] * corr + p * sv[jj, c]
                m = m_new
        cuda.syncthreads()
    if live:
        # A row with every key masked has l == 0: NaN, as PyTorch.
        inv = float32(1) / l if l > float32(0) else float32(math.nan)
        for c in range(ev):
            out[z, i, c] = acc[c] * inv
        lse[z, i] = m + math.log(l) if l > float32(0) else float32(-math.inf)


@kernel(f"void({_SIG3}, {_SIG3}, {_SIG3}, {_SIG3}, int32, int32, float32, {_SIG3}, {_SIG3}, "
        f"float32[:, :], float32[:, :], {_SIG3})")
def backward_query(q, k, v, bias, has_bias, causal, scale, out, gout, lse, delta, gq):
    q_row = cuda.local.array(MAX_D, float32)
    g_row = cuda.local.array(MAX_D, float32)
    dq = cuda.local.array(MAX_D, float32)
    z, zb, i = _backward_thread(bias)
    length, e = q.shape[1], q.shape[2]
    s_len, ev = k.shape[1], v.shape[2]
    if i >= length:
        return
    d = float32(0)
    for c in range(ev):
        g_row[c] = gout[z, i, c]
        d += g_row[c] * out[z, i, c]
    delta[z, i] = d
    for c in range(e):
        q_row[c] = q[z, i, c]
        dq[c] = float32(0)
    row_lse = lse[z, i]
    for j in range(s_len):
        if causal and j > i:
            break
        s = _score(q_row, k[z, j], e, scale, bias, zb, i, j, has_bias)
        if s == float32(-math.inf):
            continue
        p = math.exp(s - row_lse)
        dp = float32(0)
        for c in range(ev):
            dp += g_row[c] * v[z, j, c]
        ds = p * (dp - d) * scale
        for c in range(e):
            dq[c] += ds * k[z, j, c]
    for c in range(e):
        gq[z, i, c] = dq[c]


@kernel(f"void({_SIG3}, {_SIG3}, {_SIG3}, {_SIG3}, int32, int32, float32, {_SIG3}, "
        f"float32[:, :], float32[:, :], {_SIG3}, {_SIG3})")
def backward_key(q, k, v, bias, has_bias, causal, scale, gout, lse, delta, gk, gv):
    k_row = cuda.local.array(MAX_D, float32)
    v_row = cuda.local.array(MAX_D, float32)
    dk = cuda.local.array(MAX_D, float32)
    dv = cuda.local.array(MAX_D, float32)
    z, zb, j = _backward_thread(bias)
    length, e = q.shape[1], q.shape[2]
    s_len, ev = k.shape[1], v.shape[2]
    if j >= s_len:
        return
    for c in range(e):
        k_row[c] = k[z, j, c]
        dk[c] = float32(0)
    for c in range(ev):
        v_row[c] = v[z, j, c]
        dv[c] = float32(0)
    # Under the causal mask only queries i >= j see key j.
    for i in range(j if causal else 0, length):
        s = _score(q[z, i], k_row, e, scale, bias, zb, i, j, has_bias)
        if s == float32(-math.inf):
            continue
        p = math.exp(s - lse[z, i])
        dp = float32(0)
        for c in range(ev):
            dv[c] += p * gout[z, i, c]
            dp += gout[z, i, c] * v_row[c]
        ds = p * (dp - delta[z, i]) * scale
        for c in range(e):
            dk[c] += ds * q[z, i, c]
    for c in range(e):
        gk[z, j, c] = dk[c]
    for c in range(ev):
        gv[z, j, c] = dv[c]
