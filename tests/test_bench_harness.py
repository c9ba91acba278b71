"""The benchmark harness: timers, ratio and ceiling arithmetic, the JSON schema, the report
and plot writers, --compare, committed GPU results, and the cases computing the right op."""
import json
import time

import numpy as np
import pytest

from pyengine.bench import cases, committed, compare, plots, report, schema, suite
from pyengine.bench.providers import discover
from pyengine.bench.timers import Timing, time_cpu, timer_for


def test_time_cpu_reports_the_median_and_rotates_the_input_index():
    seen, delays = [], {0: 0.002, 1: 0.002, 2: 0.3, 3: 0.002, 4: 0.002}

    def fn(i):
        seen.append(i)
        time.sleep(delays[i])

    t = time_cpu(fn, repeats=5, warmup=2)
    assert seen == [0, 1, 0, 1, 2, 3, 4]          # warm-up calls, then one per repeat
    assert t.repeats == 5
    assert 2.0 <= t.ms < 150.0                     # the 300 ms outlier does not move the median
    assert t.spread > 1.0


def test_time_cpu_budget_stops_after_three_repeats():
    t = time_cpu(lambda i: time.sleep(0.01), repeats=50, warmup=0, budget_s=0.001)
    assert t.repeats == 3


@pytest.mark.parametrize("kw", [dict(repeats=0), dict(warmup=-1)])
def test_timer_arguments_are_checked(kw):
    with pytest.raises(ValueError, match="repeats|warmup"):
        time_cpu(lambda i: None, **kw)


def test_timer_for_rejects_unknown_devices():
    assert timer_for("cpu") is time_cpu
    with pytest.raises(ValueError, match="'tpu'"):
        timer_for("tpu")


def _row(provider, ms, size=64, case="sgemm", family="matmul", device="cpu"):
    return {"family": family, "case": case, "size": size, "size_label": "n", "shape": "s", "provider": provider,
            "device": device, "ours": provider in ("numpy", "native", "numba"), "ms": ms, "repeats": 3,
            "spread": 0.1, "flops": 1e6, "bytes": 1e3, "gflops": 1e6 / ms / 1e6, "gbps": 1e3 / ms / 1e6,
            "bound": "compute", "ceiling_share": 0.5}


def test_ratios_divide_the_denominators_time_by_the_numerators():
    rows = [_row("numpy", 8.0), _row("native", 2.0, device="cuda"), _row("numba", 4.0, device="cuda"),
            _row("torch-cpu", 6.0), _row("numpy", 1.0, size=16)]
    got = {(r["numerator"], r["denominator"], r["size"]): r["speedup"] for r in suite.ratios(rows)}
    assert got == {("native", "numpy", 64): 4.0, ("numba", "numpy", 64): 2.0,
                   ("numpy", "torch-cpu", 64): 0.75, ("native", "numba", 64): 2.0}
    kinds = {r["kind"] for r in suite.ratios(rows)}
    assert kinds == {"gpu/cpu", "ours/vendor", "native/numba"}


def test_result_row_uses_the_ceiling_that_bounds_the_op():
    ceiling = {"sgemm_gflops": 100.0, "copy_gbps": 10.0}       # ridge at 10 FLOP/byte
    case = cases.cases_for(("matmul",))[0]
    provider = discover(("numpy",))[0][0]
    compute = cases.Built(lambda i: None, flops=2e9, bytes=1e8, shape="s")     # 20 FLOP/byte
    memory = cases.Built(lambda i: None, flops=1e8, bytes=1e8, shape="s")     # 1 FLOP/byte
    t = Timing(ms=40.0, repeats=3, spread=0.0)
    r = suite.result_row(case, compute, provider, 64, t, ceiling)
    assert (r["bound"], r["gflops"], r["ceiling_share"]) == ("compute", 50.0, 0.5)
    r = suite.result_row(case, memory, provider, 64, t, ceiling)
    assert (r["bound"], r["gbps"], r["ceiling_share"]) == ("memory", 2.5, 0.25)


@pytest.fixture(scope="module")
def tiny_doc():
    """One real run of two cheap families at small sizes, the way `pyengine bench` runs."""
    return suite.run(("cpu",), ("matmul", "activations"), quick=True, providers=("numpy", "torch-cpu"),
                     command="test", max_size=1 << 16, threads=1)


def test_a_run_fills_the_schema_and_its_numbers_agree(tiny_doc):
    assert schema.problems(tiny_doc) == []
    assert {r["case"] for r in tiny_doc["results"]} == {"sgemm", "relu", "gelu"}
    assert all(r["size"] <= 1 << 16 for r in tiny_doc["results"])
    for r in tiny_doc["results"]:
        assert r["gflops"] == pytest.approx(r["flops"] / r["ms"] / 1e6)
        assert r["gbps"] == pytest.approx(r["bytes"] / r["ms"] / 1e6)
    assert tiny_doc["machine"]["threads"]["blas"] in (None, [1])
    assert tiny_doc["ceilings"]["cpu"]["sgemm_gflops"] > 0


def test_schema_lists_every_problem(tiny_doc):
    broken = json.loads(json.dumps(tiny_doc))
    del broken["machine"]["gpu"]
    broken["results"][0]["ms"] = -1.0
    broken["results"][1]["gflops"] = float("nan")
    broken["schema"] = "other/9"
    found = " | ".join(schema.problems(broken))
    assert "machine lacks 'gpu'" in found and "results[0].ms" in found
    assert "results[1].gflops" in found and "other/9" in found
    with pytest.raises(ValueError, match="not a pyengine benchmark document"):
        schema.validate(broken)


def test_schema_write_read_round_trip_and_bad_files(tiny_doc, tmp_path):
    path = schema.write(tiny_doc, tmp_path / "sub" / "bench.json")
    assert schema.read(path) == json.loads(json.dumps(tiny_doc))
    (tmp_path / "junk.json").write_text("{not json")
    with pytest.raises(ValueError, match="junk.json"):
        schema.read(tmp_path / "junk.json")


def test_markdown_report_shows_every_result_and_ratio(tiny_doc):
    text = report.markdown(tiny_doc, images=[])
    table_rows = [line for line in text.splitlines() if line.startswith("| ")]
    ratio_rows = len(tiny_doc["ratios"])
    # result header + results + ceiling header + ceiling rows + ratio header + ratios
    assert len(table_rows) == 1 + len(tiny_doc["results"]) + 1 + len(tiny_doc["ceilings"]) + (1 + ratio_rows if ratio_rows else 0)
    assert "threads: BLAS" in text and tiny_doc["date"] in text
    for r in tiny_doc["ratios"]:
        assert f"{r['speedup']:.2f}x" in text


def test_plots_are_written_as_png(tiny_doc, tmp_path):
    paths = plots.write_all(tiny_doc, tmp_path)
    expected = {"throughput.png", "roofline.png"} | ({"speedup.png"} if tiny_doc["ratios"] else set())
    assert {p.name for p in paths} == expected
    for p in paths:
        assert p.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and p.stat().st_size > 5000


def test_speedup_plot_is_skipped_without_ratios(tiny_doc, tmp_path):
    doc = dict(tiny_doc, ratios=[])
    assert plots.speedup(doc, tmp_path / "s.png") is None


def test_compare_divides_a_by_b_for_shared_results(tiny_doc):
    a = dict(tiny_doc, results=[_row("numpy", 8.0), _row("numpy", 3.0, size=16), _row("torch-cpu", 2.0)])
    b = dict(tiny_doc, results=[_row("numpy", 2.0), _row("numpy", 6.0, size=16), _row("numpy", 1.0, size=99)])
    rows = compare.compare(a, b)
    assert [(r["size"], r["provider"], r["speedup"]) for r in rows] == [(64, "numpy", 4.0), (16, "numpy", 0.5)]
    assert compare.geomean([4.0, 0.25]) == pytest.approx(1.0)
    text = compare.render(a, b, "old.json", "new.json")
    assert "4.00x" in text and "0.50x" in text and "geometric mean A/B = 1.41x" in text


def test_committed_results_keep_card_and_date(tmp_path, tiny_doc):
    (tmp_path / "h100").mkdir()
    (tmp_path / "h100" / "gpu.json").write_text(json.dumps(
        {"meta": {"card": "Card X", "date": "2026-01-02 03:04 UTC", "command": "c"},
         "rows": [{"name": "sgemm ours", "shape": "1024^3", "ms": 0.1, "gflops": 2e4, "gbps": None}]}))
    gpu_doc = json.loads(json.dumps(tiny_doc))
    gpu_doc["machine"].update(gpu="Card Y", driver="13000")
    gpu_doc["date"] = "2026-02-01 00:00 UTC"
    for r in gpu_doc["results"][:2]:
        r["device"] = "cuda"
    (tmp_path / "y").mkdir()
    (tmp_path / "y" / "bench.json").write_text(json.dumps(gpu_doc))
    (tmp_path / "cpu").mkdir()
    (tmp_path / "cpu" / "bench.json").write_text(json.dumps(tiny_doc))     # CPU-only: not a GPU result
    (tmp_path / "bad").mkdir()
    (tmp_path / "bad" / "x.json").write_text("[1, 2]")
    runs, problems = committed.load(tmp_path)
    assert [(r["card"], r["date"]) for r in runs] == [("Card Y", "2026-02-01 00:00 UTC"),
                                                     ("Card X", "2026-01-02 03:04 UTC")]
    assert len(runs[0]["rows"]) == 2 and runs[1]["rows"][0]["gflops"] == 2e4
    assert len(problems) == 1 and "x.json" in problems[0]


def test_unknown_provider_and_family_are_refused():
    with pytest.raises(ValueError, match="'tpu'"):
        discover(("tpu",))
    with pytest.raises(ValueError, match="convolution"):
        cases.cases_for(("convolution",))


def test_numpy_provider_is_always_present():
    present, _ = discover(("numpy",))
    assert [p.name for p in present] == ["numpy"] and present[0].ours


def _reference(case_name, inputs):
    """What each kernel case computes, in float64 NumPy written plainly."""
    x = inputs[0].astype(np.float64)
    if case_name == "relu":
        return np.maximum(x, 0)
    if case_name == "softmax":
        e = np.exp(x - x.max(axis=-1, keepdims=True))
        return e / e.sum(axis=-1, keepdims=True)
    if case_name == "layer_norm":
        w, b = (a.astype(np.float64) for a in inputs[1:])
        return (x - x.mean(1, keepdims=True)) / np.sqrt(x.var(1, keepdims=True) + 1e-5) * w + b
    raise AssertionError(case_name)


@pytest.mark.torch
@pytest.mark.parametrize("case_name", ["sgemm", "relu", "gelu", "softmax", "cross_entropy", "layer_norm",
                                       "sdpa causal", "max_pool2d 2x2", "conv3x3 16->32 28x28"])
def test_every_provider_computes_the_same_op(case_name):
    """The adapters must hand each provider the same op: the builders draw the same inputs
    from the same seed, so NumPy's and PyTorch's outputs must agree."""
    torch = pytest.importorskip("torch")
    case = next(c for c in cases.CASES if c.name == case_name)
    outs = []
    for p in discover(("numpy", "torch-cpu"))[0]:
        built = case.build(p, case.quick[0], np.random.default_rng(7), 1)
        out = built.fn(0)
        out = out[0] if isinstance(out, tuple) else out
        outs.append(out.numpy() if isinstance(out, torch.Tensor) else out)
    assert len(outs) == 2
    np.testing.assert_allclose(outs[0], outs[1], rtol=2e-4, atol=2e-4)


@pytest.mark.parametrize("case_name", ["relu", "softmax", "layer_norm"])
def test_numpy_cases_compute_their_float64_reference(case_name):
    case = next(c for c in cases.CASES if c.name == case_name)
    p = discover(("numpy",))[0][0]
    rng = np.random.default_rng(3)
    built = case.build(p, 33, rng, 1)
    # The builder drew its inputs first from a generator with this seed: draw them again.
    replay = np.random.default_rng(3)
    shape = {"relu": (33,), "softmax": (33, cases._CLASSES), "layer_norm": (33, cases._WIDTH)}[case_name]
    inputs = [replay.standard_normal(shape, dtype=np.float32)]
    if case_name == "layer_norm":
        inputs += [replay.standard_normal((cases._WIDTH,), dtype=np.float32) for _ in range(2)]
    out = built.fn(0)
    out = out[0] if isinstance(out, tuple) else out
    np.testing.assert_allclose(out, _reference(case_name, inputs), rtol=1e-4, atol=1e-5)


def test_time_cuda_takes_the_median_of_event_intervals(monkeypatch):
    """The GPU timer's bookkeeping, against a stand-in for CuPy's events whose clock is set
    by the timed function itself (real events run in bench/device_check.sh's GPU tests)."""
    import sys
    from types import SimpleNamespace

    from pyengine.bench.timers import time_cuda

    clock = {"now": 0.0, "synced": 0}

    class Event:
        def record(self):
            self.at = clock["now"]

        def synchronize(self):
            clock["synced"] += 1

    stream = SimpleNamespace(synchronize=lambda: clock.update(synced=clock["synced"] + 1))
    fake = SimpleNamespace(cuda=SimpleNamespace(Event=Event, get_current_stream=lambda: stream,
                                                get_elapsed_time=lambda a, b: b.at - a.at))
    monkeypatch.setitem(sys.modules, "cupy", fake)
    durations = [5.0, 5.0, 1.0, 2.0, 90.0, 3.0, 4.0]       # two warm-ups, then five repeats
    calls = []

    def fn(i):
        calls.append(i)
        clock["now"] += durations[len(calls) - 1]

    t = time_cuda(fn, repeats=5, warmup=2)
    assert calls == [0, 1, 0, 1, 2, 3, 4]
    assert t.ms == 3.0 and t.repeats == 5
    assert clock["synced"] == 1 + 5           # after the warm-up, then once per repeat


@pytest.mark.torch
def test_backward_cases_compute_the_gradients_pytorch_gives():
    """The backward benchmarks time real gradients: replay the builders' draws and let
    PyTorch's autograd compute the same gradients in float64."""
    torch = pytest.importorskip("torch")
    p = discover(("numpy",))[0][0]
    t64 = lambda a: torch.tensor(a, dtype=torch.float64, requires_grad=True)  # noqa: E731

    conv = next(c for c in cases.CASES if c.name == "conv3x3 backward")
    gx, gw, gb = conv.build(p, 3, np.random.default_rng(5), 1).fn(0)
    replay = np.random.default_rng(5)
    c, k, h, w, r = (cases._CONV[key] for key in ("c", "k", "h", "w", "r"))
    x = t64(replay.standard_normal((3, c, h, w), dtype=np.float32))
    gy = torch.tensor(replay.standard_normal((3, k, h, w), dtype=np.float32), dtype=torch.float64)
    wt = t64(replay.standard_normal((k, c, r, r), dtype=np.float32))
    torch.nn.functional.conv2d(x, wt, padding=1).backward(gy)
    np.testing.assert_allclose(gx, x.grad.numpy(), rtol=1e-4, atol=1e-3)
    np.testing.assert_allclose(gw, wt.grad.numpy(), rtol=1e-4, atol=1e-3)
    np.testing.assert_allclose(gb, gy.sum(dim=(0, 2, 3)).numpy(), rtol=1e-4, atol=1e-3)

    att = next(c for c in cases.CASES if c.name == "sdpa causal backward")
    grads = att.build(p, 17, np.random.default_rng(6), 1).fn(0)
    replay = np.random.default_rng(6)
    shape = (cases._ATT_BATCH, cases._HEADS, 17, cases._HEAD_DIM)
    q, kk, v = (t64(replay.standard_normal(shape, dtype=np.float32)) for _ in range(3))
    gout = torch.tensor(replay.standard_normal(shape, dtype=np.float32), dtype=torch.float64)
    torch.nn.functional.scaled_dot_product_attention(q, kk, v, is_causal=True).backward(gout)
    for ours, ref in zip(grads, (q.grad, kk.grad, v.grad)):
        np.testing.assert_allclose(ours, ref.numpy(), rtol=1e-4, atol=1e-4)


def test_the_numba_simulator_is_never_timed(monkeypatch):
    monkeypatch.setenv("NUMBA_ENABLE_CUDASIM", "1")
    present, missing = discover(("numba",))
    assert present == [] and "simulator" in missing["numba"]


def test_gpu_inputs_rotate_past_the_l2_cache_and_every_provider_gets_the_same_draws():
    from pyengine.backend import numpy_backend
    from pyengine.bench.providers import Provider

    calls = []

    def recorder(p, n, rng, sets):
        calls.append((p.device, sets, rng.standard_normal()))
        return cases.Built(lambda i: None, flops=1.0, bytes=cases.ROTATE_BYTES / 10, shape="s")

    kernel = cases.Case("f", "c", "n", (5,), (5,), recorder, "matmul")
    step = cases.Case("f", "c", "n", (5,), (5,), recorder, None)
    cpu = Provider("numpy", "cpu", True, numpy_backend)
    gpu = Provider("stand-in", "cuda", True, numpy_backend)
    cases.build(kernel, cpu, 5)
    cases.build(kernel, gpu, 5)
    cases.build(step, gpu, 5)
    assert [(d, s) for d, s, _ in calls] == [("cpu", 2), ("cuda", 1), ("cuda", 10), ("cuda", 2)]
    assert len({draw for _, _, draw in calls}) == 1          # seeded by the size alone


def test_a_failing_ceiling_is_reported_not_fatal(monkeypatch):
    from pyengine.bench import ceilings

    def broken(quick):
        raise RuntimeError("no driver")

    monkeypatch.setattr(ceilings, "cpu", broken)
    found, errors = ceilings.measure(["cpu"])
    assert found == {} and errors == ["ceilings on cpu: RuntimeError('no driver')"]
    doc = suite.run(("cpu",), ("matmul",), providers=("numpy",), max_size=64, threads=1)
    assert doc["errors"] == ["ceilings on cpu: RuntimeError('no driver')"]
    assert doc["results"][0]["ceiling_share"] is None and schema.problems(doc) == []
