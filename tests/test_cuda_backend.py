"""The native CUDA backend on any machine: the extension imports without a driver, the
backend module imports and fills the table, and ``available()`` / ``.to("cuda")`` say which
piece is missing. These run in CI (no GPU); the kernels themselves are in test_cuda_kernels.py."""
import importlib

import pytest

import pyengine as pe
from pyengine.backend import TABLE, check_table
from pyengine.backend import cuda_backend as cb

REASONS = ("pyengine._C is not importable", "pyengine._C was built without CUDA", "CuPy is not installed",
           "no CUDA driver", "no CUDA device")


def _extension():
    try:
        return importlib.import_module("pyengine._C")
    except ImportError as exc:
        pytest.skip(f"pyengine._C is not importable (not built in this checkout, or installed without nvcc): {exc}")


def test_matmul_binding_rejects_a_stride_tuple_of_the_wrong_length():
    # Checked before any CUDA call, so it runs without a GPU wherever the extension is built.
    c = _extension()
    with pytest.raises(ValueError, match=r"a_strides must be \(batch, row, col\), got 2 values"):
        c.matmul(1, 2, 2, 2, 0, (4, 2), 0, (4, 2, 1), 0, 0, 0, 0.0, False, 0)
    with pytest.raises(ValueError, match=r"b_strides must be \(batch, row, col\), got 4 values"):
        c.matmul(1, 2, 2, 2, 0, (4, 2, 1), 0, (4, 2, 1, 1), 0, 0, 0, 0.0, False, 0)


def test_backend_fills_the_table():
    check_table(cb)
    assert (cb.name, cb.device) == ("native", "cuda")
    assert all(callable(getattr(cb, n)) for n in TABLE)


def test_extension_imports_and_probes_without_aborting():
    c = _extension()
    assert c.cuda_built is True
    count = c.device_count()
    assert isinstance(count, int) and count >= 0
    err = c.runtime_error_string()
    assert isinstance(err, str)
    if count == 0:
        assert err.startswith("cudaError"), err
    else:
        assert err == ""
        assert isinstance(c.device_name(0), str) and c.device_name(0)


def test_extension_exposes_every_core_kernel():
    c = _extension()
    for fn in ("matmul", "conv2d_forward", "conv2d_backward_data", "conv2d_backward_weight",
               "max_pool2d_forward", "max_pool2d_backward", "avg_pool2d_forward", "avg_pool2d_backward",
               "activation_forward", "activation_backward"):
        assert callable(getattr(c, fn)), fn


def test_available_gives_a_reason_when_false():
    ok, reason = cb.available()
    assert isinstance(ok, bool) and isinstance(reason, str)
    if not ok:
        assert reason.startswith(REASONS), reason


def test_to_cuda_raises_with_the_reason_when_unavailable():
    ok, reason = cb.available()
    if ok:
        pytest.skip("a usable GPU is present")
    with pe.backends.cuda.kernels("native"):
        with pytest.raises(RuntimeError) as info:
            pe.tensor([1.0, 2.0]).to("cuda")
    assert reason in str(info.value)


class _FakeExtension:
    cuda_built = True

    def __init__(self, count, err, cuda_built=True):
        self._count, self._err, self.cuda_built = count, err, cuda_built

    def device_count(self):
        return self._count

    def runtime_error_string(self):
        return self._err


@pytest.mark.parametrize("ext,cupy_present,expected", [
    (None, True, "pyengine._C is not importable: not built here"),
    (_FakeExtension(1, "", cuda_built=False), True, "pyengine._C was built without CUDA (no nvcc at build time)"),
    (_FakeExtension(1, ""), False, "CuPy is not installed"),
    (_FakeExtension(0, "cudaErrorInsufficientDriver: CUDA driver version is insufficient"), True,
     "no CUDA driver (cudaErrorInsufficientDriver"),
    (_FakeExtension(0, "cudaErrorNoDevice: no CUDA-capable device is detected"), True,
     "no CUDA device (cudaErrorNoDevice"),
], ids=["no-extension", "built-without-cuda", "no-cupy", "no-driver", "no-device"])
def test_available_tells_the_missing_pieces_apart(monkeypatch, ext, cupy_present, expected):
    monkeypatch.setattr(cb, "_C", ext)
    monkeypatch.setattr(cb, "cp", object() if cupy_present else None)
    monkeypatch.setattr(cb, "_availability", None)
    ok, reason = cb.available()
    assert not ok
    assert reason.startswith(expected), reason


def test_available_is_true_with_a_device(monkeypatch):
    monkeypatch.setattr(cb, "_C", _FakeExtension(2, ""))
    monkeypatch.setattr(cb, "cp", object())
    monkeypatch.setattr(cb, "_availability", None)
    assert cb.available() == (True, "")


def test_pe_cuda_reports_no_device_when_unavailable():
    if cb.available()[0]:
        pytest.skip("a usable GPU is present")
    with pe.backends.cuda.kernels("native"):
        assert pe.cuda.is_available() is False
        assert pe.cuda.device_count() == 0
        assert cb.available()[1] in pe.cuda.unavailable_reason()


# The launchers check their arguments before the first CUDA call, so these errors (naming
# the shapes) reach Python on any machine that has the extension, driver or not.

def test_conv_launcher_names_the_shapes_of_a_bad_geometry():
    c = _extension()
    with pytest.raises(ValueError, match=r"output size should be \(1,1\).*x=\(1,2,3,3\) w=\(4,2,3,3\)"):
        c.conv2d_forward((1, 2, 3, 3), (4, 2, 3, 3), (1, 4, 2, 2), (1, 1), (0, 0), (1, 1), 1, 0, 0, 0, 0, 0)
    with pytest.raises(ValueError, match="channels must divide by groups"):
        c.conv2d_backward_data((1, 3, 5, 5), (4, 1, 3, 3), (1, 4, 3, 3), (1, 1), (0, 0), (1, 1), 2, 0, 0, 0, 0)


def test_matmul_launcher_rejects_operands_without_a_unit_stride():
    c = _extension()
    with pytest.raises(ValueError, match=r"operand A needs a unit stride.*\(5, 7\)"):
        c.matmul(1, 2, 2, 2, 0, (0, 5, 7), 0, (0, 2, 1), 0, 0, 0, 0.0, False, 0)
    with pytest.raises(ValueError, match="fused epilogue supports none, relu, gelu and gelu_tanh"):
        c.matmul(1, 2, 2, 2, 0, (0, 2, 1), 0, (0, 1, 2), 0, 0, 5, 0.0, False, 0)


def test_pool_and_activation_launchers_reject_bad_arguments():
    c = _extension()
    with pytest.raises(ValueError, match=r"max_pool2d: invalid geometry.*stride=\(0,1\)"):
        c.max_pool2d_forward((1, 1, 4, 4), (1, 1, 2, 2), (2, 2), (0, 1), (0, 0), (1, 1), 0, 0, 0, 0)
    with pytest.raises(ValueError, match="unknown activation code 42"):
        c.activation_forward(42, 0.0, 0, 0, 4, 0)


@pytest.mark.parametrize("shape, strides, expect", [
    ((5, 3), (12, 4), (3, 1)),     # row-major
    ((5, 3), (4, 20), (1, 5)),     # column-major (a transposed view)
    ((5, 3), (0, 0), (None, None)),  # a broadcast scalar: neither layout, the caller copies
    ((5, 3), (0, 4), (None, None)),  # a broadcast row
])
def test_matrix_strides_is_unpackable_for_every_layout(shape, strides, expect):
    # On the H100, the gradient of y.sum() (ones broadcast with strides (0, 0)) reached the
    # GEMM and `view, (rs, cs) = _matrix_strides(x)` failed on a bare None. NumPy arrays
    # stand in for CuPy's here: the function reads only shape, strides and itemsize.
    import numpy as np
    base = np.zeros(64, np.float32)
    x = np.lib.stride_tricks.as_strided(base, shape, strides)
    view, (rs, cs) = cb._matrix_strides(x)
    assert (rs, cs) == expect
    assert (view is None) == (expect == (None, None))
