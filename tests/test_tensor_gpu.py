"""Core ops on "cuda" (each GPU kernel provider) equal the CPU in forward and gradients.

The Functions are the same classes on every device (they ask ctx.backend), so this checks the
glue on CuPy arrays: broadcasting sums, scatter-add indexing, reductions, views, transfers.
Skipped without a GPU (tests/conftest.py says why).
"""
import numpy as np
import pytest

import pyengine as pe

pytestmark = pytest.mark.gpu

OPS = {
    "arith_broadcast": (lambda a, b: (a * b + a / (b * b + 1) - 2.5) ** 2, [(3, 17), (17,)]),
    "unary": (lambda a: (a.abs() + 0.1).sqrt().log() + a.exp().clamp(0.2, 3.0), [(33, 5)]),
    "max_min_where": (lambda a, b: pe.where(a > b, pe.maximum(a, b), pe.minimum(a, b) * 3), [(4, 17), (4, 1)]),
    "reductions": (lambda a: a.sum(1) + a.mean(0).sum() + a.var(1) + a.std(0, keepdim=True).sum()
                   + a.max(1).values + a.amax(0).sum() + a.min(dim=1)[0], [(5, 17)]),
    "matmul": (lambda a, b: a @ b, [(3, 17, 33), (33, 5)]),
    "shapes": (lambda a: a.permute(2, 0, 1).reshape(5, -1)[:, 1::2].unsqueeze(0).expand(2, 5, 6)
               .repeat(1, 1, 2).flatten().contiguous(), [(3, 4, 5)]),
    "index_repeat": (lambda a: a[pe.tensor([0, 0, 2], device=a.device)] * 2 + a[a.detach() > 0].sum(), [(3, 7)]),
    "cat_stack_split": (lambda a, b: pe.stack(pe.cat([a, b], dim=0).split(3), dim=0).tril(), [(4, 3), (2, 3)]),
    "masked_fill": (lambda a: a.masked_fill(a.detach() < 0, -1.0).triu(1), [(6, 6)]),
}


@pytest.fixture(params=["native", "numba"])
def provider(request):
    with pe.backends.cuda.kernels(request.param):
        if not pe.cuda.is_available():
            pytest.skip(f"{request.param} kernels unavailable: {pe.cuda.unavailable_reason()}")
        yield request.param


@pytest.mark.parametrize("name", sorted(OPS))
def test_op_on_cuda_matches_cpu(rng, provider, name):  # provider: the fixture sets the kernels
    fn, shapes = OPS[name]
    host = [rng.standard_normal(s).astype(np.float32) for s in shapes]
    cpu = [pe.tensor(h, requires_grad=True) for h in host]
    gpu = [pe.tensor(h, device="cuda", requires_grad=True) for h in host]
    out_cpu, out_gpu = fn(*cpu), fn(*gpu)
    assert out_gpu.device == "cuda"
    np.testing.assert_allclose(out_gpu.detach().cpu().numpy(), out_cpu.detach().numpy(), rtol=2e-5, atol=2e-5)
    weights = rng.standard_normal(out_cpu.shape).astype(np.float32)
    (out_cpu * pe.tensor(weights)).sum().backward()
    (out_gpu * pe.tensor(weights, device="cuda")).sum().backward()
    for c, g in zip(cpu, gpu):
        assert g.grad.device == "cuda"
        np.testing.assert_allclose(g.grad.cpu().numpy(), c.grad.numpy(), rtol=2e-4, atol=2e-4)


def test_transfer_factories_and_cuda_module(rng, provider):
    a = rng.standard_normal((3, 17)).astype(np.float32)
    x = pe.tensor(a, requires_grad=True)
    y = x.to("cuda")
    assert y.device == "cuda" and y.dtype == pe.float32 and "cuda" in repr(y)
    z = (y * 2).sum(dim=1).cpu()
    pe.cuda.synchronize()
    np.testing.assert_allclose(z.detach().numpy(), 2 * a.sum(axis=1), rtol=1e-5)
    z.sum().backward()
    np.testing.assert_allclose(x.grad.numpy(), np.full_like(a, 2.0))
    assert pe.cuda.device_count() >= 1 and pe.cuda.get_device_name()
    assert pe.cuda.current_kernels() == provider
    for t in (pe.zeros(2, 3, device="cuda"), pe.randn(4, device="cuda"), pe.arange(5, device="cuda"),
              pe.full((2,), 1.5, device="cuda"), pe.ones_like(y)):
        assert t.device == "cuda"
    pe.manual_seed(7)
    r1 = pe.rand(5, device="cuda").cpu().numpy()
    pe.manual_seed(7)
    np.testing.assert_array_equal(pe.rand(5, device="cuda").cpu().numpy(), r1)
    with pytest.raises(RuntimeError, match="cpu and cuda"):
        x + y
    with pytest.raises(TypeError, match="cpu"):
        y.detach().numpy()
