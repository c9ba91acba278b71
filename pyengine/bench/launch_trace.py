"""What one training step on the native CUDA path costs on the host, measured without a GPU.

``trace_step`` runs the real ``cuda_backend`` / ``_cuda_nn`` / autograd code with NumPy
standing in for CuPy (an ndarray subclass that counts what CuPy would do on a device) and a
fake ``pyengine._C`` whose launchers do nothing but count. Per training step it reports:

    kernels       our launches (``_C.*`` calls), by name
    cupy          CuPy glue launches: elementwise/reduction ufuncs, copies, fills, gathers,
                  random draws, by name
    allocs        device allocations (every array CuPy would allocate: ufunc results without
                  ``out=``, empty/zeros/ones/*_like, copies)
    syncs         host<->device synchronisations: bool/int/float/item/tolist of a device
                  array, ``asnumpy``/``get`` (a shape check that reads device data is one of
                  these), with the Python line that asked
    python_s      wall time of the step on the host (kernels cost nothing here, so it is
                  Python plus NumPy's small-array glue)
    per_op        for each autograd Function: calls, forward and backward host time

The kernels compute nothing (outputs are zeros), so the loss is meaningless; the counts are
exact for the code path taken. Run: ``python -m pyengine.bench.launch_trace [--model gpt]``.
"""
from __future__ import annotations

import argparse
import contextlib
import sys
import time
import traceback
import types
import weakref
from collections import Counter, defaultdict

import numpy as np

_STATS = None  # the _Stats of the trace in progress (None: nothing is counted)


class _Stats:
    def __init__(self):
        self.kernels = Counter()
        self.cupy = Counter()
        self.allocs = 0
        self.syncs = Counter()
        self.fwd_s = defaultdict(float)
        self.bwd_s = defaultdict(float)
        self.calls = Counter()

        self.sites = None  # Counter of CuPy launches by call site, when asked for (slow)

    @staticmethod
    def site(what):
        """``what`` and the innermost line outside this module and NumPy that asked for it."""
        for fr in reversed(traceback.extract_stack()[:-3]):
            if fr.filename != __file__ and "/numpy/" not in fr.filename and "_cuda_common" not in fr.filename:
                return f"{what} at {fr.filename.rsplit('/pyengine/', 1)[-1]}:{fr.lineno} ({fr.name})"
        return what

    def sync(self, what):
        self.syncs[self.site(what)] += 1

    def summary(self):
        return {
            "kernels": sum(self.kernels.values()), "cupy": sum(self.cupy.values()), "allocs": self.allocs,
            "syncs": sum(self.syncs.values()),
        }


def _count(kind, name, alloc=False):
    if _STATS is not None:
        if kind:
            getattr(_STATS, kind)[name] += 1
            if kind == "cupy" and _STATS.sites is not None:
                _STATS.sites[_STATS.site(name)] += 1
        if alloc:
            _STATS.allocs += 1


class _Mem:
    __slots__ = ("ptr",)

    def __init__(self, ptr):
        self.ptr = ptr


def _dev(a):
    """``a`` (an ndarray or scalar) as a device array, without copying."""
    if isinstance(a, DeviceArray) or not isinstance(a, (np.ndarray, np.generic)):
        return a
    a = np.asarray(a)
    d = a.view(DeviceArray)
    d._owns = a.base is None  # the view is only our wrapper: to the code under test it owns its memory
    if d._owns:
        _OWNERS[id(a)] = d
    else:  # a view keeps its owner's wrapper alive, so .base stays that one object (as CuPy's does)
        root = a
        while isinstance(np.ndarray.base.__get__(root), np.ndarray):
            root = np.ndarray.base.__get__(root)
        d._keep = root if isinstance(root, DeviceArray) else _OWNERS.get(id(root))
    return d


_OWNERS = weakref.WeakValueDictionary()  # id(an ndarray that owns memory) -> the DeviceArray wrapping it


def _wrap(out):
    if isinstance(out, tuple):
        return tuple(_wrap(o) for o in out)
    if isinstance(out, list):
        return [_wrap(o) for o in out]
    return _dev(out)


def _plain(a):
    if isinstance(a, DeviceArray):
        return a.view(np.ndarray)
    if isinstance(a, (tuple, list)):
        return type(a)(_plain(x) for x in a)
    return a


# NumPy functions (not ufuncs, not methods) that launch a kernel when CuPy runs them on a device
# array: ``cp.sum(x)`` reaches DeviceArray.__array_function__, which must count it as x.sum() would.
_LAUNCHING = frozenset(("sum", "mean", "max", "min", "amax", "amin", "any", "all", "prod", "var", "std",
                        "argmax", "argmin", "cumsum", "copyto", "repeat", "sort"))


class DeviceArray(np.ndarray):
    """A NumPy array that behaves, and counts, as a CuPy array would."""

    _owns = False

    @property
    def base(self):
        """As CuPy's: None for an array that owns its memory, else the array that owns it."""
        if self._owns:
            return None
        b = np.ndarray.base.__get__(self)
        while isinstance(b, np.ndarray):
            if isinstance(b, DeviceArray) and b._owns:
                return b
            up = np.ndarray.base.__get__(b)
            if up is None:
                return _OWNERS.get(id(b), b)
            b = up
        return b

    @property
    def data(self):
        return _Mem(self.__array_interface__["data"][0])

    def __array_ufunc__(self, ufunc, method, *inputs, **kwargs):
        if "out" in kwargs:
            kwargs["out"] = tuple(_plain(o) for o in kwargs["out"])
        else:
            _count(None, None, alloc=True)
        _count("cupy", f"{ufunc.__name__}.{method}" if method != "__call__" else ufunc.__name__)
        res = getattr(ufunc, method)(*_plain(inputs), **kwargs)
        return None if method == "at" else _wrap(res)

    def __array_function__(self, func, types_, args, kwargs):
        if func.__name__ in _LAUNCHING:
            _count("cupy", func.__name__, alloc=func.__name__ != "copyto" and kwargs.get("out") is None)
        return _wrap(func._implementation(*_plain(args), **_plain(kwargs)))

    # Host reads: each one is a device synchronisation in CuPy.
    def __bool__(self):
        _STATS and _STATS.sync("bool()")
        return bool(self.view(np.ndarray))

    def __float__(self):
        _STATS and _STATS.sync("float()")
        return float(self.view(np.ndarray))

    def __int__(self):
        _STATS and _STATS.sync("int()")
        return int(self.view(np.ndarray))

    def __index__(self):
        _STATS and _STATS.sync("index()")
        return self.view(np.ndarray).__index__()

    def item(self, *args):
        _STATS and _STATS.sync("item()")
        return self.view(np.ndarray).item(*args)

    def tolist(self):
        _STATS and _STATS.sync("tolist()")
        return self.view(np.ndarray).tolist()

    def get(self):
        _STATS and _STATS.sync("get()")
        return np.array(self.view(np.ndarray))

    # Methods that launch a kernel on a device.
    def astype(self, dtype, order="K", casting="unsafe", subok=True, copy=True):
        if not copy and np.dtype(dtype) == self.dtype:
            return self
        _count("cupy", "astype", alloc=True)
        return _dev(self.view(np.ndarray).astype(dtype, order=order, casting=casting))

    def copy(self, order="C"):
        _count("cupy", "copy", alloc=True)
        return _dev(self.view(np.ndarray).copy(order))

    def reshape(self, *shape, **kw):
        out = self.view(np.ndarray).reshape(*shape, **kw)
        if out.size and not np.shares_memory(out, self.view(np.ndarray)):
            _count("cupy", "copy(reshape)", alloc=True)
        return _dev(out)

    def fill(self, value):
        _count("cupy", "fill")
        self.view(np.ndarray).fill(value)

    def __getitem__(self, key):
        out = self.view(np.ndarray)[_plain(key) if isinstance(key, (DeviceArray, tuple)) else key]
        if isinstance(out, np.ndarray) and out.size and not np.shares_memory(out, self.view(np.ndarray)):
            _count("cupy", "getitem(gather)", alloc=True)
        return _dev(out)

    def __setitem__(self, key, value):
        _count("cupy", "setitem")
        self.view(np.ndarray)[_plain(key) if isinstance(key, (DeviceArray, tuple)) else key] = _plain(value)


def _allocating(name, fn):
    def f(*args, **kwargs):
        _count("cupy" if name not in ("empty", "empty_like") else None, name, alloc=True)
        return _wrap(fn(*_plain(args), **_plain(kwargs)))
    return f


def _ascontiguousarray(a, dtype=None):
    base = _plain(a)
    out = np.ascontiguousarray(base, dtype=dtype)
    if not (out is base or (out.size and np.shares_memory(out, base))):
        _count("cupy", "ascontiguousarray(copy)", alloc=True)
    return _dev(out)


def _asarray(a, dtype=None):
    if isinstance(a, DeviceArray):
        return a if dtype is None or np.dtype(dtype) == a.dtype else a.astype(dtype)
    _count("cupy", "asarray(host->device)", alloc=True)
    return _dev(np.array(_plain(a), dtype=dtype))


def _asnumpy(a):
    _STATS and _STATS.sync("asnumpy()")
    return np.array(_plain(a))


def fake_cupy():
    """A module with the parts of CuPy's API the backend uses, on DeviceArray."""
    cp = types.ModuleType("cupy")
    cp.ndarray = DeviceArray
    for name in ("float16", "float32", "float64", "int32", "int64", "bool_", "uint8", "dtype", "inf", "nan",
                 "newaxis", "isscalar", "broadcast_shapes", "result_type"):
        setattr(cp, name, getattr(np, name))
    cp.empty, cp.empty_like = _allocating("empty", np.zeros), _allocating("empty_like", np.zeros_like)
    for name in ("zeros", "zeros_like", "ones", "ones_like", "full", "full_like", "tri",
                 "arange", "array", "concatenate", "stack", "where", "take", "take_along_axis", "eye", "triu",
                 "tril", "clip", "outer"):
        setattr(cp, name, _allocating(name, getattr(np, name)))
    for name in ("moveaxis", "broadcast_to", "swapaxes", "transpose", "expand_dims", "squeeze", "reshape"):
        setattr(cp, name, (lambda fn: lambda *a, **k: _wrap(fn(*_plain(a), **_plain(k))))(getattr(np, name)))
    for name in dir(np):  # every ufunc (add, exp, maximum, ...) goes through DeviceArray's counting
        if isinstance(getattr(np, name), np.ufunc):
            setattr(cp, name, getattr(np, name))
    for name in ("sum", "mean", "max", "min", "any", "all", "prod", "var", "sqrt", "exp", "log", "abs", "matmul",
                 "copyto", "add", "multiply", "maximum", "isfinite", "argmax", "cumsum"):
        if not hasattr(cp, name) or not isinstance(getattr(np, name), np.ufunc):
            setattr(cp, name, getattr(np, name))
    cp.ascontiguousarray = _ascontiguousarray
    cp.lib = types.SimpleNamespace(stride_tricks=types.SimpleNamespace(
        as_strided=lambda x, shape=None, strides=None: _dev(np.lib.stride_tricks.as_strided(_plain(x), shape, strides))))
    cp.asarray = _asarray
    cp.asnumpy = _asnumpy
    rng = np.random.default_rng(0)

    def draw(kind):
        def f(*args, size=None, dtype=np.float64, **kw):
            shape = size if size is not None else (args[0] if kind != "randint" else args[2] if len(args) > 2 else ())
            _count("cupy", f"random.{kind}", alloc=True)
            if kind == "randint":
                return _dev(rng.integers(args[0], args[1], size=shape).astype(kw.get("dtype", dtype) or np.int64))
            draw_fn = rng.random if kind == "random" else rng.standard_normal
            return _dev(draw_fn(shape).astype(dtype))
        return f
    cp.random = types.SimpleNamespace(seed=lambda s=None: None, random=draw("random"),
                                      standard_normal=draw("standard_normal"), randint=draw("randint"))
    stream = types.SimpleNamespace(ptr=0, synchronize=lambda: None)
    cp.cuda = types.SimpleNamespace(get_current_stream=lambda: stream)
    return cp


class FakeKernels(types.ModuleType):
    """Stands in for ``pyengine._C``: every launcher counts its call and does nothing."""

    cuda_built = True
    attention_max_head_dim = 128

    def __init__(self):
        super().__init__("pyengine._C")

    @staticmethod
    def device_count():
        return 1

    @staticmethod
    def runtime_error_string():
        return ""

    @staticmethod
    def device_name(i=0):
        return "fake device (pyengine.bench.launch_trace)"

    @staticmethod
    def layer_norm_partial_rows(rows):
        return max(1, min(int(rows), 128))

    @staticmethod
    def layer_norm_fused_partial_rows(rows, d):  # as on a GPU for the d a model uses: fused
        return max(1, min(int(rows), 128))

    @staticmethod
    def kernel_version(family):
        return 0

    def __getattr__(self, name):
        if name.startswith("__"):
            raise AttributeError(name)

        def launch(*args, **kwargs):
            _count("kernels", name)
        return launch


@contextlib.contextmanager
def fake_device():
    """Inside, the "native" CUDA backend runs on the host: NumPy for CuPy, counting no-op kernels."""
    import pyengine
    from pyengine.backend import _cuda_common, _cuda_nn, cuda_backend
    from pyengine.backend import get_cuda_kernels, set_cuda_kernels

    cp, kernels = fake_cupy(), FakeKernels()
    saved = {(m, n): getattr(m, n) for m in (cuda_backend, _cuda_common, _cuda_nn) for n in ("cp", "_C")
             if hasattr(m, n)}
    saved_mods = {k: sys.modules.get(k) for k in ("cupy", "pyengine._C")}
    saved_avail, kernels_before = cuda_backend._availability, get_cuda_kernels()
    package_c = getattr(pyengine, "_C", None)
    try:
        pyengine._C = kernels
        for (m, n) in saved:
            setattr(m, n, cp if n == "cp" else kernels)
        cuda_backend.xp = cp
        sys.modules["cupy"], sys.modules["pyengine._C"] = cp, kernels
        cuda_backend._availability = (True, "")
        set_cuda_kernels("native")
        yield cp
    finally:
        for (m, n), v in saved.items():
            setattr(m, n, v)
        cuda_backend.xp = saved[(cuda_backend, "cp")]
        for k, v in saved_mods.items():
            if v is None:
                sys.modules.pop(k, None)
            else:
                sys.modules[k] = v
        cuda_backend._availability = saved_avail
        set_cuda_kernels(kernels_before)
        if package_c is None:
            del pyengine._C
        else:
            pyengine._C = package_c


@contextlib.contextmanager
def _timed_functions(stats):
    """Time every Function's forward (inside apply) and backward, per Function class."""
    from pyengine import autograd

    apply, run_node = autograd.Function.apply.__func__, autograd._run_node

    def timed_apply(cls, *args, **kwargs):
        t0 = time.perf_counter()
        try:
            return apply(cls, *args, **kwargs)
        finally:
            stats.fwd_s[cls.__name__] += time.perf_counter() - t0
            stats.calls[cls.__name__] += 1

    def timed_run_node(node, got, grads, *rest):
        t0 = time.perf_counter()
        try:
            return run_node(node, got, grads, *rest)
        finally:
            stats.bwd_s[node.fn.__name__] += time.perf_counter() - t0

    autograd.Function.apply = classmethod(timed_apply)
    autograd._run_node = timed_run_node
    try:
        yield
    finally:
        autograd.Function.apply = classmethod(apply)
        autograd._run_node = run_node


# Models at the demo's sizes (pyengine/bench/demo.py SIZES) and issue #3's GPT.
MODELS = {
    "mlp": ("mlp", dict(), 64),
    "lenet5-small": ("lenet5", dict(), 128),
    "lenet5-medium": ("lenet5", dict(), 512),
    "gpt-small": ("gpt", dict(n_layer=2, n_head=4, n_embd=64, block_size=64), 32),
    "gpt-medium": ("gpt", dict(n_layer=4, n_head=4, n_embd=128, block_size=64), 64),
    "gpt-issue3": ("gpt", dict(n_layer=4, n_head=4, n_embd=128, block_size=128), 16),
}


def build_step(model_key, device, optimizer="sgd", batch=None, seed=0):
    """(step function, parts) of one training step of ``model_key`` on ``device``: zero_grad,
    forward, cross-entropy, backward, optimizer step; ``parts`` has the model, opt, xt, yt
    and n_params."""
    import pyengine as pe
    from pyengine.models import get_model

    from .training import classification_step, benchmark_optimizer

    name, kw, default_batch = MODELS[model_key]
    n = batch or default_batch
    rng = np.random.default_rng(seed)
    pe.manual_seed(seed)
    if name == "gpt":
        model = get_model("gpt", vocab_size=65, **kw)
        t = kw["block_size"]
        x, y = rng.integers(0, 65, (n, t)), rng.integers(0, 65, (n, t))
    elif name == "lenet5":
        model = get_model("lenet5")
        x, y = rng.standard_normal((n, 1, 28, 28), dtype=np.float32), rng.integers(0, 10, n)
    else:
        model = get_model("mlp", **kw)  # 64-128-64-10
        x, y = rng.standard_normal((n, 64), dtype=np.float32), rng.integers(0, 10, n)
    model.to(device)
    xt, yt = pe.tensor(x, device=device), pe.tensor(y.astype(np.int64), device=device)
    params = list(model.parameters())
    opt = benchmark_optimizer(pe, optimizer, params)
    step = classification_step(pe, model, xt, yt, opt)
    return step, types.SimpleNamespace(model=model, opt=opt, xt=xt, yt=yt,
                                       n_params=sum(int(np.prod(p.shape)) for p in params))


def trace_step(model_key="mlp", optimizer="sgd", batch=None, warmup=1, sites=False):
    """Counts of one training step (after ``warmup`` untraced ones) on the fake device;
    ``sites`` also counts the CuPy launches by the line that made them (slows the step)."""
    global _STATS
    with fake_device():
        step, parts = build_step(model_key, "cuda", optimizer, batch)
        for _ in range(warmup):
            step()
        stats = _Stats()
        if sites:
            stats.sites = Counter()
        with _timed_functions(stats):
            _STATS = stats
            try:
                t0 = time.perf_counter()
                step()
                python_s = time.perf_counter() - t0
            finally:
                _STATS = None
    return dict(stats.summary(), python_s=python_s, n_params=parts.n_params, stats=stats)


def report(model_key, optimizer, res, top=12, out=sys.stdout):
    st = res["stats"]
    print(f"## {model_key} ({optimizer}): {res['kernels']} kernels, {res['cupy']} CuPy glue launches, "
          f"{res['allocs']} allocations, {res['syncs']} syncs, host {res['python_s'] * 1e3:.2f} ms/step", file=out)
    print("kernels: " + ", ".join(f"{k} {v}" for k, v in st.kernels.most_common()), file=out)
    print("cupy:    " + ", ".join(f"{k} {v}" for k, v in st.cupy.most_common()), file=out)
    for k, v in st.syncs.most_common():
        print(f"sync:    {v} x {k}", file=out)
    for k, v in (st.sites or Counter()).most_common():
        print(f"site:    {v} x {k}", file=out)
    print("| Function | calls | fwd us/call | bwd us/call |", file=out)
    print("|---|---:|---:|---:|", file=out)
    rows = sorted(st.calls, key=lambda k: -(st.fwd_s[k] + st.bwd_s[k]))
    for k in rows[:top]:
        c = st.calls[k]
        print(f"| {k} | {c} | {st.fwd_s[k] / c * 1e6:.1f} | {st.bwd_s[k] / c * 1e6:.1f} |", file=out)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", choices=sorted(MODELS) + ["all"], default="all")
    ap.add_argument("--optimizer", choices=("sgd", "adam", "adamw"), default="sgd")
    ap.add_argument("--sites", action="store_true", help="count CuPy launches by call site")
    args = ap.parse_args(argv)
    keys = sorted(MODELS) if args.model == "all" else [args.model]
    for k in keys:
        report(k, args.optimizer, trace_step(k, args.optimizer, sites=args.sites))
        print()


if __name__ == "__main__":
    main()
