"""Every Numba kernel and device function compiles to PTX for sm_80 and sm_90, so a kernel
that would not compile for a real GPU fails here, on a machine without one.

compile_ptx does not exist under NUMBA_ENABLE_CUDASIM=1 (set for this process by
conftest.py), hence the subprocess with the variable removed. NVRTC comes from the
nvidia-cuda-nvrtc wheel; no driver is needed.
"""
import os
import subprocess
import sys
from pathlib import Path

import pytest

import pyengine.backend.numba_backend  # noqa: F401  (imports every family, filling REGISTRY)
from pyengine.backend._numba_kernels import REGISTRY
from pyengine.backend._numba_kernels.compile_check import FAMILIES

ROOT = Path(__file__).resolve().parents[1]


def _without_simulator():
    env = {k: v for k, v in os.environ.items() if k != "NUMBA_ENABLE_CUDASIM"}
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
    return env


def _run(*args):
    return subprocess.run([sys.executable, *args], cwd=ROOT, env=_without_simulator(),
                          capture_output=True, text=True, timeout=600)


@pytest.fixture(scope="module")
def compile_report():
    proc = _run("-m", "pyengine.backend._numba_kernels.compile_check", "--cc", "8.0", "9.0")
    lines = dict(line.rsplit(": ", 1) if ": " in line else (line, "") for line in proc.stdout.splitlines())
    return proc, lines


def test_every_kernel_compiles_for_sm80_and_sm90(compile_report):
    proc, lines = compile_report
    expected = {f"{mod.rsplit('.', 1)[-1]}.{name} sm_{cc}" for mod, name, *_ in REGISTRY for cc in (80, 90)}
    assert {m.rsplit(".", 1)[-1] for m, *_ in REGISTRY} == set(FAMILIES)
    missing = expected - set(lines)
    assert not missing, f"not compiled: {sorted(missing)}\n{proc.stderr[-3000:]}"
    failed = {k: v for k, v in lines.items() if v != "ok"}
    assert not failed and proc.returncode == 0, f"{failed}\n{proc.stderr[-3000:]}"


def test_user_kernel_with_our_device_function_compiles():
    code = (
        "from numba import cuda, float32\n"
        "import pyengine.numba as pn\n"
        "from pyengine.backend._numba_kernels.compile_check import _pretend_device\n"
        "def bias_gelu(x, b, y):\n"
        "    i = cuda.grid(1)\n"
        "    if i < y.size:\n"
        "        y[i] = pn.gelu(x[i] + b[i % b.size]) + pn.leaky_relu(x[i], 0.1)\n"
        "for cc in ((8, 0), (9, 0)):\n"
        "    _pretend_device(cc)\n"
        "    ptx, _ = cuda.compile_ptx(bias_gelu, 'void(float32[:], float32[:], float32[:])', cc=cc)\n"
        "    assert f'.target sm_{cc[0]}{cc[1]}' in ptx, ptx[:400]\n"
        "native = pn.native_activation('gelu')\n"
        "def fused_native(x, y):\n"
        "    i = cuda.grid(1)\n"
        "    if i < y.size:\n"
        "        y[i] = native(x[i], float32(0))\n"
        "ptx, _ = cuda.compile_ptx(fused_native, 'void(float32[:], float32[:])', cc=(9, 0))\n"
        "assert '.extern .func' in ptx and 'pyengine_gelu' in ptx, ptx[:400]\n"
        "print('compiled')\n"
    )
    proc = _run("-c", code)
    assert proc.returncode == 0 and "compiled" in proc.stdout, proc.stderr[-3000:]


@pytest.mark.parametrize("name", ["relu", "leaky_relu", "gelu", "gelu_tanh", "sigmoid", "tanh", "selu"])
def test_native_activation_source_compiles_with_nvrtc(name):
    """pyengine.numba.native_activation links this source into users' kernels on a GPU;
    NVRTC (what Numba's linker runs) must accept it, forward and gradient, for both targets."""
    nvrtc = pytest.importorskip("cuda.bindings.nvrtc", reason="needs cuda-python's NVRTC bindings")
    import pyengine.numba as pn
    for grad in (False, True):
        src = pn.native_source(name, grad)
        symbol = f"pyengine_{name}_grad" if grad else f"pyengine_{name}"
        assert f'extern "C" __device__ float {symbol}(' in src
        for arch in (b"compute_80", b"compute_90"):
            _, prog = nvrtc.nvrtcCreateProgram(src.encode(), f"{symbol}.cu".encode(), 0, [], [])
            opts = [b"--gpu-architecture=" + arch, b"-rdc=true"]
            (err,) = nvrtc.nvrtcCompileProgram(prog, len(opts), opts)
            _, size = nvrtc.nvrtcGetProgramLogSize(prog)
            log = b" " * size
            nvrtc.nvrtcGetProgramLog(prog, log)
            assert err == nvrtc.nvrtcResult.NVRTC_SUCCESS, log.decode()
            nvrtc.nvrtcDestroyProgram(prog)


def test_native_source_rejects_unknown_name():
    import pyengine.numba as pn
    with pytest.raises(ValueError, match="native activation must be one of .* got 'swish'"):
        pn.native_source("swish")
