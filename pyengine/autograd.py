"""Define-by-run autograd: Function, the backward graph walk, grad modes, gradcheck.

A Function works on backend arrays, never on Tensors: ``apply`` unwraps the Tensor
arguments, runs ``forward`` and, when grad is enabled and an input requires it, keeps the
``ctx`` as the graph node of the outputs. ``backward`` walks those nodes in reverse
topological order and accumulates into the leaves' ``.grad``, as PyTorch does.
"""
from __future__ import annotations

import contextlib
import sys
import weakref

import numpy as np

from .backend import _MODULES, get_backend, get_cuda_kernels

_grad_enabled = True
_anomaly = False


def is_grad_enabled() -> bool:
    return _grad_enabled


class set_grad_enabled(contextlib.ContextDecorator):
    """Context manager and decorator that sets grad mode, restoring the old one on exit."""

    def __init__(self, mode: bool = True):
        self.mode = bool(mode)

    def __enter__(self):
        global _grad_enabled
        self._prev, _grad_enabled = _grad_enabled, self.mode
        return self

    def __exit__(self, *exc):
        global _grad_enabled
        _grad_enabled = self._prev
        return False


class _FixedMode(set_grad_enabled):
    """A grad mode usable as ``with m():``, ``@m()`` or a bare ``@m`` decorator."""
    _mode = True

    def __new__(cls, func=None):
        self = super().__new__(cls)
        self.mode = cls._mode
        return self if func is None else self(func)

    def __init__(self, func=None):
        pass


class no_grad(_FixedMode):
    _mode = False


class enable_grad(_FixedMode):
    _mode = True


class inference_mode(set_grad_enabled):
    """``with pe.inference_mode():``, ``@pe.inference_mode()`` or bare ``@pe.inference_mode``,
    as in PyTorch: no graph is recorded inside, and ``inference_mode(False)`` turns grad mode
    on. Differs from PyTorch: pyengine has no inference tensors, so this is ``no_grad`` and
    its results may enter autograd later."""

    def __new__(cls, mode=True):
        self = super().__new__(cls)
        if callable(mode):
            self.__init__()
            return self(mode)
        return self

    def __init__(self, mode: bool = True):
        super().__init__(not mode)


@contextlib.contextmanager
def detect_anomaly():
    """Inside, a NaN or inf produced by a backward raises naming the Function."""
    global _anomaly
    prev, _anomaly = _anomaly, True
    try:
        yield
    finally:
        _anomaly = prev


class Context:
    """The ``ctx`` of a Function call; kept as the graph node of its outputs."""

    def __init__(self, fn, backend, needs_input_grad):
        self.fn = fn
        self.backend = backend
        self.needs_input_grad = needs_input_grad
        self.out_device = None  # a Function that moves data sets the outputs' device
        self._saved = ()
        self._versions = ()
        self._freed = False
        self._non_diff = ()
        self._parents = ()
        self._outputs = ()
        self._retained = {}
        self._out_xp = None

    def save_for_backward(self, *arrays):
        self._saved = arrays

    def mark_non_differentiable(self, *arrays):
        self._non_diff = arrays

    @property
    def saved_tensors(self):
        if self._freed:
            raise RuntimeError(
                "Trying to backward through the graph a second time (or directly access saved "
                "tensors after they have already been freed). Saved intermediate values of the "
                f"graph are freed when you call .backward(); in {self.name}. Specify "
                "retain_graph=True if you need to backward through the graph a second time.")
        for i, (counter, version) in enumerate(self._versions):
            if counter is not None and counter.value != version:
                shape = tuple(self._saved[i].shape)
                raise RuntimeError(
                    "one of the variables needed for gradient computation has been modified by "
                    f"an inplace operation: saved array {i} of shape {shape} of {self.name} is at "
                    f"version {counter.value}; expected version {version} instead.")
        return self._saved

    @property
    def name(self) -> str:
        return self.fn.__name__ + "Backward"

    def __repr__(self):
        return f"<{self.name}>"


class Function:
    """Subclass with static ``forward(ctx, *args)`` and ``backward(ctx, *grads)``."""

    @classmethod
    def apply(cls, *args, **kwargs):
        Tensor = _tensor.Tensor
        device, first, raw, needs = None, None, [], []
        for a in args:
            if isinstance(a, Tensor):
                if a._view_fn is not None and _grad_enabled and a._view_version != a._version_counter.value:
                    a._refresh_view()  # its base changed in place since: take its current history
                if device is None:
                    device, first = a.device, a
                elif a.device != device:
                    raise RuntimeError(
                        "Expected all tensors to be on the same device, but found at least two "
                        f"devices, {device} and {a.device} (in {cls.__name__})")
                raw.append(a.data)
                needs.append(_grad_enabled and a._requires_grad)
            else:
                raw.append(a)
                needs.append(False)
        device = device or "cpu"
        ctx = Context(cls, backend_for(device), tuple(needs))
        out = cls.forward(ctx, *raw, **kwargs)
        single = not isinstance(out, tuple)
        outs = (out,) if single else out
        out_device = ctx.out_device or device
        results = tuple(Tensor._make(o, out_device) if o is not None else None for o in outs)
        if getattr(cls, "is_view", False):
            for r in results:  # a view shares its base's version counter, as in PyTorch
                r._version_counter = first._version_counter
                r._view_of, r._view_version = first, first._version_counter.value
                r._view_fn = (cls, args[1:]) if _grad_enabled else None
        if True in needs:
            non_diff = [id(a) for a in ctx._non_diff]
            diff = [i for i, (r, o) in enumerate(zip(results, outs))
                    if r is not None and r.data.dtype.kind == "f" and id(o) not in non_diff]
            if diff:
                _record(ctx, args, outs, results, diff)
        return results[0] if single else results

    @staticmethod
    def forward(ctx, *args):
        raise NotImplementedError

    @staticmethod
    def backward(ctx, *grads):
        raise NotImplementedError


def _record(ctx, args, outs, results, diff):
    """Make ``ctx`` the graph node of the differentiable outputs."""
    parents = []
    for a, need in zip(args, ctx.needs_input_grad):
        if not need:
            parents.append(None)
        elif a._ctx is None:
            parents.append((a, None, a.data.shape))  # a leaf: its .grad accumulates
        else:
            parents.append((a._ctx, a._out_idx, a.data.shape))
    ctx._parents = parents
    # An integer output (max_pool2d's indices) gets no gradient: its backward receives None
    # instead of a zeros array made (and, on a GPU, filled by a launch) every step.
    ctx._outputs = [(r.data.shape, r.data.dtype) if r is not None and r.data.dtype.kind == "f" else None
                    for r in results]
    ctx._out_xp = backend_for(results[diff[0]].device).xp  # where zero gradients are made
    for i in diff:
        r = results[i]
        r._requires_grad = True
        r._ctx, r._out_idx = ctx, i
    if ctx._saved:
        # Saved arrays remember the version of the tensor they came from, so an in-place
        # change before backward is caught (PyTorch's version counter).
        Tensor = _tensor.Tensor
        by_id = {id(a.data): a._version_counter for a in args if isinstance(a, Tensor)}
        by_id.update({id(o): r._version_counter for o, r in zip(outs, results) if r is not None})
        counters = [by_id.get(id(s)) if s is not None else None for s in ctx._saved]
        ctx._versions = [(c, c.value if c is not None else 0) for c in counters]


_backends = {}


def backend_for(device):
    """get_backend, cached per device and, on the GPU, per kernel provider (it follows
    pe.backends.cuda.set_kernels): get_backend's import_module costs a microsecond or two,
    and every op and every graph node asks."""
    name = _MODULES.get("numpy" if device == "cpu" else get_cuda_kernels() if device == "cuda" else None)
    mod = _backends.get(name)
    # Checked against sys.modules: a test may swap a backend module for a stand-in.
    if mod is None or sys.modules.get(name) is not mod:
        mod = get_backend(device)
        _backends[name] = mod
    return mod


def _toposort(root):
    """Nodes reachable from ``root``, each after every node that feeds gradient into it."""
    # A node is marked when it is expanded, not when it is pushed: marking on push lets a
    # node reached by a short path finish before the long path through it is walked.
    order, seen, stack = [], set(), [(root, False)]
    while stack:
        node, done = stack.pop()
        if done:
            order.append(node)
            continue
        if id(node) in seen:
            continue
        seen.add(id(node))
        stack.append((node, True))
        for p in node._parents:
            if p is not None and p[1] is not None and id(p[0]) not in seen:
                stack.append((p[0], False))
    return order[::-1]


def backward(tensor, gradient=None, retain_graph=False):
    """Accumulate d(tensor)/d(leaf) * gradient into every leaf's ``.grad``."""
    if not tensor.requires_grad:
        raise RuntimeError("element 0 of tensors does not require grad and does not have a grad_fn")
    xp = tensor._backend.xp
    if gradient is None:
        if tensor.numel() != 1:
            raise RuntimeError(
                f"grad can be implicitly created only for scalar outputs; got shape {tensor.shape}")
        g = xp.ones(tensor.shape, dtype=tensor.data.dtype)
    else:
        g = gradient.data if isinstance(gradient, _tensor.Tensor) else xp.asarray(gradient)
        if tuple(g.shape) != tensor.shape:
            raise RuntimeError(f"gradient has shape {tuple(g.shape)} but the tensor has shape {tensor.shape}")
    if tensor._ctx is None:
        _accumulate(tensor, g)
        return
    grads = {id(tensor._ctx): {tensor._out_idx: g}}
    with no_grad():
        for node in _toposort(tensor._ctx):
            got = grads.pop(id(node), None)
            if got:  # a node no gradient reached passes none on (its leaves keep .grad None)
                _run_node(node, got, grads)
            if not retain_graph:
                node._saved, node._freed = (), True


def _root(a):
    """The array that owns ``a``'s memory (NumPy and CuPy point a view's .base at it)."""
    b = getattr(a, "base", None)
    return a if b is None else b


def _run_node(node, got, grads):
    xp = node._out_xp
    outs = [got[i] if i in got else None if meta is None else xp.zeros(meta[0], dtype=meta[1])
            for i, meta in enumerate(node._outputs)]
    for i, ref in node._retained.items():
        t = ref()
        if t is not None and i in got:
            _accumulate(t, got[i])
    res = node.fn.backward(node, *outs)
    res = res if isinstance(res, tuple) else (res,)
    if len(res) != len(node._parents):
        raise RuntimeError(f"{node.name} returned {len(res)} gradients; expected "
                           f"{len(node._parents)} (one per forward argument)")
    # A leaf keeps a gradient as its .grad without a copy when nothing else can hold its
    # memory: not an incoming gradient passed through, not a saved array, not shared with
    # another result (by owner, so views count). On a GPU this saves a copy per parameter.
    shared = {id(_root(a)) for a in outs + list(node._saved) if a is not None}
    roots = [id(_root(g)) if g is not None else None for g in res]
    for i, (p, g) in enumerate(zip(node._parents, res)):
        if p is None or g is None:
            continue
        owned = roots[i] not in shared and roots.count(roots[i]) == 1
        g = _as_array(g, node.backend.xp)
        if tuple(g.shape) != p[2]:
            raise RuntimeError(f"{node.name} returned a gradient of shape {tuple(g.shape)} for "
                               f"input {i}, whose shape is {p[2]}")
        if _anomaly and not bool(node.backend.xp.isfinite(g).all()):
            raise RuntimeError(f"Function '{node.name}' returned nan or inf values in its {i}th output.")
        if p[1] is None:
            _accumulate(p[0], g, owned)
        else:
            slot = grads.setdefault(id(p[0]), {})
            slot[p[1]] = slot[p[1]] + g if p[1] in slot else g


def _as_array(a, xp):
    return a if isinstance(a, xp.ndarray) else xp.asarray(a)


def _accumulate(t, g, owned=False):
    if t.grad is None:
        # A copy unless ``owned``: the same array may reach several leaves (Add passes g to
        # both inputs) or be the caller's, and optimizers and clip_grad_norm_ change .grad in place.
        t.grad = _tensor.Tensor._make(g if owned and g.dtype == t.data.dtype else g.astype(t.data.dtype),
                                      t.device)
    else:
        t.grad = _tensor.Tensor._make(t.grad.data + g.astype(t.data.dtype, copy=False), t.device)


def retain(tensor):
    """Keep the gradient of a non-leaf ``tensor`` in its ``.grad`` (Tensor.retain_grad)."""
    if tensor._ctx is not None:
        tensor._ctx._retained[tensor._out_idx] = weakref.ref(tensor)


class GradcheckError(RuntimeError):
    pass


def gradcheck(fn, inputs, eps=1e-6, atol=1e-5, rtol=1e-3, raise_exception=True, seed=0):
    """Compare backward with float64 central differences of ``sum(v * fn(*inputs))``.

    ``v`` is a fixed random cotangent per output: one backward gives the vector-Jacobian
    product for that ``v`` (PyTorch's gradcheck builds the whole Jacobian instead; a wrong
    entry escapes a random ``v`` with probability zero), and the central differences perturb
    every input element. Returns True, or raises (returns False with
    ``raise_exception=False``) naming the input and the element with the worst error.
    """
    Tensor = _tensor.Tensor
    inputs = tuple(inputs) if isinstance(inputs, (tuple, list)) else (inputs,)
    checked = [i for i, t in enumerate(inputs) if isinstance(t, Tensor) and t.requires_grad]
    for i in checked:
        if inputs[i].data.dtype != np.float64:
            raise TypeError(f"gradcheck needs float64 inputs; input {i} is {inputs[i].dtype}")
    rng = np.random.default_rng(seed)
    cotangents = []

    def loss():
        outs = fn(*inputs)
        outs = outs if isinstance(outs, (tuple, list)) else (outs,)
        outs = [o for o in outs if isinstance(o, Tensor) and o.is_floating_point()]
        while len(cotangents) < len(outs):
            o = outs[len(cotangents)]
            cotangents.append(o._backend.asarray(rng.standard_normal(o.shape)))
        return sum((o * Tensor._make(v, o.device)).sum() for o, v in zip(outs, cotangents))

    kept = {i: inputs[i].grad for i in checked}  # gradcheck leaves the callers' .grad alone
    for i in checked:
        inputs[i].grad = None
    total = loss()
    if total.requires_grad:
        total.backward()
    analytic_grads = {i: inputs[i].grad for i in checked}
    for i, g in kept.items():
        inputs[i].grad = g
    for i in checked:
        t = inputs[i]
        g = analytic_grads[i]
        analytic = np.zeros(t.shape) if g is None else np.asarray(g._host(), dtype=np.float64)
        numeric = np.zeros(t.shape)
        with no_grad():
            for k in np.ndindex(*t.shape):
                orig = t.data[k].item()
                t.data[k] = orig + eps
                up = loss().item()
                t.data[k] = orig - eps
                down = loss().item()
                t.data[k] = orig
                numeric[k] = (up - down) / (2 * eps)
        err = np.abs(analytic - numeric) - (atol + rtol * np.abs(numeric))
        if not np.isfinite(analytic).all() or (err > 0).any():
            k = np.unravel_index(int(np.nanargmax(np.where(np.isfinite(err), err, np.inf))), t.shape)
            msg = (f"gradcheck failed for input {i} of shape {t.shape} at index {tuple(map(int, k))}:"
                   f" analytical {analytic[k]!r}, numerical {numeric[k]!r}")
            if raise_exception:
                raise GradcheckError(msg)
            return False
    return True


# Last, because tensor.py (through pyengine/ops) imports Function from here; only the
# module object is needed, and its Tensor is looked up at call time.
from . import tensor as _tensor  # noqa: E402
