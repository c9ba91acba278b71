"""Array backends: one module per backend, all exposing the same flat function table.

A backend is a module, not a class (needle's style). Autograd Functions never branch on the
device: they ask the tensor for its backend (``get_backend(device)``) and call the names
below. Every backend module defines every name in ``TABLE``; ``check_table`` enforces it and
the tests call it for each backend that imports.

Conventions shared by all backends
----------------------------------
* Arrays are the backend's own (``numpy.ndarray`` for "numpy", ``cupy.ndarray`` for
  "native"/"numba"; NumPy stands in for CuPy under the Numba simulator). They need not be
  contiguous. Results are new arrays; only the ``*_step`` optimizer functions,
  ``batch_norm``'s running statistics and the recurrent cells (which write into the caller's
  buffers) update in place.
* dtypes: float32 and float64 for compute (a GPU kernel may accept float32 only and say so
  with a TypeError naming the op and dtype); int64 for indices and class targets; bool masks.
* Shapes follow PyTorch: NCHW images, ``(O, C/groups, kh, kw)`` conv weights, ``(..., L, E)``
  attention queries. 2-tuples ``(h, w)`` for every stride/padding/dilation/kernel argument
  (the functional layer normalises ints to tuples before calling a backend).

Module attributes
-----------------
name                      "numpy" | "native" | "numba"
device                    "cpu" | "cuda"
xp                        the array module for glue (numpy or cupy): elementwise arithmetic,
                          reductions, reshapes, copies, fills. Kernel families below must go
                          through the table, never through xp in autograd code.

The GPU backends ("native", "numba") import on any machine, GPU or not, and define
``available() -> (bool, reason)``: reason says what is missing (extension built without
CUDA, CuPy not installed, no driver, no device). ``pe.cuda.is_available()`` and the error
raised by ``.to("cuda")`` come from it.

Host transfer, random numbers
-----------------------------
asarray(a, dtype=None)    host array/scalar/list -> backend array (copies to the device)
to_numpy(a)               backend array -> numpy.ndarray (copies to the host)
manual_seed(seed)         reseed this backend's generator
rand(shape, dtype)        uniform [0, 1)
randn(shape, dtype)       standard normal
randint(low, high, shape) int64 in [low, high)

Kernel families (forward and backward)
--------------------------------------
matmul(a, b)
    ``a @ b`` with NumPy semantics for ndim >= 2 (batched, batch dims broadcast).
    The caller promotes 1-D operands. Backward is two more matmuls on transposed views
    (``swapaxes(-1, -2)``), so a backend should handle transposed strides without copying.
linear(x, w, b, activation=None)
    ``activation(x @ w.T + b)`` for x (..., in), w (out, in), b (out,) or None;
    activation in (None, "relu", "gelu", "gelu_tanh"). Lets a GPU fuse bias and activation
    into the GEMM epilogue; returns y. (Backward is composed from matmul and
    activation_backward by the caller, which keeps the pre-activation when it needs it.)
conv2d(x, w, b, stride, padding, dilation, groups) -> y
conv2d_backward(gy, x, w, stride, padding, dilation, groups, needs=(True, True, True))
    -> (gx, gw, gb), each None where ``needs`` says False or b was None.
max_pool2d(x, kernel_size, stride, padding, dilation, ceil_mode) -> (y, indices)
    indices int64, flat index into the H*W plane of each (n, c), as PyTorch's return_indices.
max_pool2d_backward(gy, indices, x_shape) -> gx
avg_pool2d(x, kernel_size, stride, padding, ceil_mode, count_include_pad, divisor_override) -> y
avg_pool2d_backward(gy, x_shape, kernel_size, stride, padding, ceil_mode,
                    count_include_pad, divisor_override) -> gx
activation(name, x, param=None) -> y
activation_backward(name, gy, x, y, param=None) -> gx
    name in ACTIVATIONS; param is negative_slope for leaky_relu, approximate ("none"|"tanh")
    for gelu, unused otherwise. Backward may use x (input) or y (output), whichever is cheaper.
softmax(x, dim, log=False) -> y                 numerically stable (max subtracted)
softmax_backward(gy, y, dim, log=False) -> gx   y is the forward output (softmax or log_softmax)
cross_entropy(logits, target, ignore_index=-100, label_smoothing=0.0) -> (loss, lse)
    logits (N, C), target (N,) int64; loss (N,) per row (0 where target == ignore_index),
    lse (N,) the row log-sum-exp kept for backward. Reduction is the caller's.
cross_entropy_backward(gloss, logits, target, lse, ignore_index, label_smoothing) -> glogits
layer_norm(x, weight, bias, eps) -> (y, mean, rstd)
    x (M, D): normalise each row over D (the caller flattens normalized_shape);
    weight, bias (D,) or None; mean, rstd (M,).
layer_norm_backward(gy, x, weight, mean, rstd) -> (gx, gw, gb)   gw/gb None when weight is None
batch_norm(x, running_mean, running_var, weight, bias, training, momentum, eps)
    -> (y, mean, rstd)   x (N, C, *); statistics over all dims but 1. In training it uses the
    batch statistics and updates running_mean/var in place (unbiased var, as PyTorch); in eval
    it uses the running ones. running_* may be None (then training statistics always).
batch_norm_backward(gy, x, weight, mean, rstd, training) -> (gx, gw, gb)
dropout_mask(shape, p, dtype) -> mask already scaled by 1/(1-p) (zeros where dropped)
embedding_backward(gy, indices, num_embeddings, padding_idx) -> gw   (rows at padding_idx get 0)
scatter_add(shape, index, values) -> zeros(shape) with ``values`` added at ``index``
    (any NumPy basic/advanced index tuple; repeated indices accumulate). __getitem__ backward.
sdpa(q, k, v, attn_mask, is_causal, scale, dropout_p) -> (out, saved)
    q (..., L, E), k (..., S, E), v (..., S, Ev); attn_mask None, bool (True = may attend, as
    PyTorch) or additive float, broadcastable to (..., L, S); scale None means 1/sqrt(E).
    ``saved`` is opaque (log-sum-exp rows, probabilities, dropout mask: the backend's choice)
    and goes back to sdpa_backward unchanged. A row with every key masked gives NaN, as PyTorch.
sdpa_backward(gout, q, k, v, out, saved, attn_mask, is_causal, scale, dropout_p) -> (gq, gk, gv)

Recurrent cells (one time step's pointwise part, written into the caller's buffers)
-----------------------------------------------------------------------------------
The recurrences (nn/modules/rnn.py) call these once per step, between matmuls. Gate arrays
are gate-major, (G, B, H) with G = 4 (LSTM: i, f, g, o) or 3 (GRU: r, z, n), PyTorch's gate
order; each gate's (B, H) block is contiguous but the gate stride is free (a step's slice of
a (G, T, B, H) buffer). The LSTM functions are element-wise, so the LSTM's recurrence, which
runs transposed, passes (4, H, B) gates and (H, B) states in the same places (below, read
(B, H) as the state's shape), and lstm_cell_factors may get gate-major views of a step-major
(T, 4, H, B) buffer, whose gate blocks are not contiguous (fac included). Every output is
written in place, nothing is returned, and an output may be the same array as the input
named beside it.
lstm_cell(xg, hg, c_prev, acts, c, tanh_c, h)
    xg, hg (4, B, H): the input part (x W_ih^T + biases) and the recurrent part (h W_hh^T)
    of the pre-activations. Writes acts = sigmoid(i), sigmoid(f), tanh(g), sigmoid(o) (acts
    may be xg), c = f*c_prev + i*g, tanh_c = tanh(c), h = o*tanh_c, each (B, H).
lstm_cell_factors(acts, c_prev, tanh_c, fac, dc_dh)
    The backward's factors, which depend on the forward pass only, so the recurrence gets
    them for many steps in one call: acts (4, *S), c_prev, tanh_c (*S), S = (B, H) or
    (T, B, H). Writes fac (4, *S) = (g*i*(1-i), c_prev*f*(1-f), i*(1-g^2), tanh_c*o*(1-o))
    and dc_dh (*S) = o*(1 - tanh_c^2).
lstm_cell_backward(gh, dh_parts, dc, f, fac, dc_dh, dgates, dc_prev)
    The gradient reaching h_t is dh = gh (B, H, from the output) plus the sum of dh_parts
    (P, B, H), P >= 1 (the per-gate products of the next step's backward matmul); dc (B, H)
    reaches c_t, so dc_t = dc + dh*dc_dh. Writes dgates (4, B, H) = fac*(dc_t, dc_t, dc_t,
    dh), the pre-activations' gradient (dgates may be fac), and dc_prev = dc_t*f (B, H; f
    the forget gate's activation). dc_prev must not be dc: the recurrence alternates two.
gru_cell(xg, hg, b_hh, h_prev, acts, hn, h)
    xg (3, B, H) = x W_ih^T + b_ih; hg (3, B, H) = h_prev W_hh^T; b_hh (3H,) or None.
    r = sigmoid(xg_r + hg_r + b_r), z likewise, hn = hg_n + b_n, n = tanh(xg_n + r*hn),
    h = (1 - z)*n + z*h_prev. Writes acts = r, z, n (acts may be xg), hn and h (B, H).
gru_cell_backward(gh, dh_parts, dh_carry, acts, hn, h_prev, dxg, dhg, dh_carry_out)
    dh_t = gh + sum(dh_parts) + dh_carry (None: absent). Writes dxg = (dr, dz, dn), the
    gradient of xg's pre-activations, dhg = (dr, dz, dn*r), that of hg, and dh_carry_out =
    dh_t * z, the part of h_{t-1}'s gradient that bypasses the matmul (may be dh_carry).

Optimizer updates (in place on the parameter and state arrays)
--------------------------------------------------------------
sgd_step(param, grad, buf, lr, momentum, dampening, nesterov, weight_decay, first_step)
    buf is None when momentum == 0; on first_step the buffer takes the gradient as is
    (PyTorch's rule).
adam_step(param, grad, exp_avg, exp_avg_sq, max_exp_avg_sq, step, lr, beta1, beta2, eps,
          weight_decay, decoupled, amsgrad)
    Adam (decoupled=False: weight decay added to the gradient) or AdamW (decoupled=True:
    ``param *= 1 - lr*weight_decay``); step is the 1-based count after increment;
    max_exp_avg_sq is None unless amsgrad.
"""
from __future__ import annotations

import importlib
import os
from types import ModuleType

ACTIVATIONS = ("relu", "leaky_relu", "gelu", "sigmoid", "tanh", "selu")

TABLE = (
    "asarray", "to_numpy", "manual_seed", "rand", "randn", "randint",
    "matmul", "linear",
    "conv2d", "conv2d_backward",
    "max_pool2d", "max_pool2d_backward", "avg_pool2d", "avg_pool2d_backward",
    "activation", "activation_backward",
    "softmax", "softmax_backward", "cross_entropy", "cross_entropy_backward",
    "layer_norm", "layer_norm_backward", "batch_norm", "batch_norm_backward",
    "dropout_mask", "embedding_backward", "scatter_add",
    "sdpa", "sdpa_backward",
    "sgd_step", "adam_step",
    "lstm_cell", "lstm_cell_factors", "lstm_cell_backward", "gru_cell", "gru_cell_backward",
)

_MODULES = {
    "numpy": "pyengine.backend.numpy_backend",
    "native": "pyengine.backend.cuda_backend",
    "numba": "pyengine.backend.numba_backend",
}


def check_table(module: ModuleType) -> None:
    """Raise if a backend module misses a name of the shared table."""
    missing = [n for n in TABLE + ("name", "device", "xp") if not hasattr(module, n)]
    if missing:
        raise NotImplementedError(f"backend {module.__name__} lacks {', '.join(missing)}")


def load(name: str) -> ModuleType:
    """Import a backend module by its name in the table ("numpy", "native", "numba")."""
    if name not in _MODULES:
        raise ValueError(f"unknown backend {name!r}; expected one of {sorted(_MODULES)}")
    return importlib.import_module(_MODULES[name])


_cuda_kernels = os.environ.get("PYENGINE_CUDA_KERNELS", "native")


def get_cuda_kernels() -> str:
    return _cuda_kernels


def set_cuda_kernels(name: str) -> None:
    global _cuda_kernels
    if name not in ("native", "numba"):
        raise ValueError(f"CUDA kernel provider must be 'native' or 'numba', got {name!r}")
    _cuda_kernels = name


def get_backend(device: str) -> ModuleType:
    """The backend module that computes on ``device`` ("cpu" or "cuda")."""
    if device == "cpu":
        return load("numpy")
    if device == "cuda":
        return load(_cuda_kernels)
    raise ValueError(f"unknown device {device!r}; expected 'cpu' or 'cuda'")
