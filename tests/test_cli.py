"""The ``pyengine`` command line and the training loop behind ``pyengine train``."""
import io
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import pyengine as pe
from pyengine.cli import build_parser, main
from pyengine.data import TensorDataset, make_regression
from pyengine.models import get_model, model_spec
from pyengine.train import fit, make_optimizer, split_dataset

ROOT = Path(__file__).resolve().parents[1]


def test_subcommands_are_discovered():
    parser = build_parser()
    sub = next(a for a in parser._actions if a.dest == "command")
    assert {"info", "train"} <= set(sub.choices)


def test_info_reports_versions_blas_and_cuda(capsys):
    assert main(["info"]) == 0
    out = capsys.readouterr().out
    lines = dict(line.split(None, 1) for line in out.strip().splitlines())
    assert lines["numpy"].strip() == np.__version__
    assert lines["numpy_blas"].strip() and not lines["numpy_blas"].startswith("unknown")
    assert lines["extension"].startswith(("built with CUDA", "not built"))
    assert lines["kernel_provider"].strip() in ("native", "numba")
    assert "gpus" in lines


def test_info_json(capsys):
    assert main(["info", "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["python"].startswith(".".join(map(str, sys.version_info[:2])))
    assert isinstance(report["gpus"], list)


def test_info_runs_as_a_program():
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    done = subprocess.run([sys.executable, "-m", "pyengine.cli", "info"], capture_output=True, text=True,
                          env=env, timeout=120)
    assert done.returncode == 0, done.stderr
    assert "numpy_blas" in done.stdout


def test_train_mlp_one_epoch_end_to_end(tmp_path, capsys):
    assert main(["train", "mlp", "--epochs", "1", "--batch-size", "32", "--out", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "samples/s" in out and "val loss" in out and "test accuracy" in out
    history = json.loads((tmp_path / "mlp_history.json").read_text())
    assert len(history["train_loss"]) == 1
    assert len(history["step_loss"]) == -(-1257 // 32)  # 70% of 1,797 digits, in batches of 32
    assert history["test_accuracy"] > 0.5  # chance is 0.1; one epoch of Adam gets far past it
    # the checkpoint loads into a fresh model and reproduces the reported accuracy
    state = pe.load(history["checkpoint"])
    model = get_model("mlp")
    model.load_state_dict(state)
    _, _, test = split_dataset(model_spec("mlp").data(), seed=0)
    x, y = test.__getitems__(range(len(test)))
    with pe.no_grad():
        acc = (model(x).numpy().argmax(1) == y.numpy()).mean()
    assert acc == pytest.approx(history["test_accuracy"])


def test_train_rejects_unknown_model_and_bad_epochs(tmp_path, capsys):
    with pytest.raises(SystemExit) as exc:
        main(["train", "resnet"])
    assert exc.value.code == 2
    assert "resnet" in capsys.readouterr().err
    assert main(["train", "mlp", "--epochs", "0", "--out", str(tmp_path)]) == 2
    assert "--epochs must be at least 1, got 0" in capsys.readouterr().err


def test_train_reports_a_diverged_run_and_a_bad_lr_without_a_traceback(tmp_path, capsys):
    assert main(["train", "mlp", "--epochs", "1", "--lr", "1e30", "--optimizer", "sgd",
                 "--out", str(tmp_path)]) == 1
    err = capsys.readouterr().err
    assert "pyengine train: training loss became nan" in err and "Traceback" not in err
    assert main(["train", "mlp", "--epochs", "1", "--lr", "-1", "--out", str(tmp_path)]) == 2
    assert "--lr must be a non-negative number, got -1.0" in capsys.readouterr().err


def test_train_on_cuda_without_a_gpu_says_why(tmp_path, capsys):
    reason = pe.cuda.unavailable_reason()
    if reason is None:
        pytest.skip("a GPU is usable here")
    assert main(["train", "mlp", "--device", "cuda", "--epochs", "1", "--out", str(tmp_path)]) == 1
    assert reason in capsys.readouterr().err


def test_fit_regression_progress_and_max_steps(tmp_path):
    pe.manual_seed(0)
    train, val, test = split_dataset(make_regression(n=301, features=5, seed=2), seed=0)
    model = get_model("mlp", sizes=(5, 17, 1))
    log = io.StringIO()  # not a terminal: one plain line per epoch, no carriage returns
    history = fit(model, train, val, test, epochs=3, batch_size=16, optimizer="adam", lr=1e-2,
                  task="regression", checkpoint=tmp_path / "reg.npz", log=log)
    lines = log.getvalue().splitlines()
    assert "\r" not in log.getvalue()
    assert [line.split()[1] for line in lines[:3]] == ["1/3", "2/3", "3/3"]
    assert all("samples/s" in line and "val loss" in line for line in lines[:3])
    assert lines[3].startswith("test loss") and "accuracy" not in lines[3]
    assert history["val_accuracy"] == [None] * 3 and history["test_accuracy"] is None
    assert history["train_loss"][-1] < history["train_loss"][0]
    assert (tmp_path / "reg.npz").exists()

    short = fit(get_model("mlp", sizes=(5, 3, 1)), train, epochs=5, batch_size=16, task="regression",
                max_steps=4, verbose=False)
    assert len(short["step_loss"]) == 4 and len(short["train_loss"]) == 1


def test_make_optimizer_names():
    params = list(get_model("mlp", sizes=(3, 2)).parameters())
    assert type(make_optimizer("adamw", params, 1e-3)).__name__ == "AdamW"
    with pytest.raises(ValueError, match="unknown optimizer 'rmsprop'"):
        make_optimizer("rmsprop", params, 1e-3)


def test_train_calls_the_models_after_train_hook(tmp_path, monkeypatch, capsys):
    import dataclasses

    from pyengine.models import registry

    seen = []
    spec = dataclasses.replace(registry.model_spec("mlp"), after_train=seen.append)
    monkeypatch.setitem(registry._REGISTRY, "mlp", spec)
    assert main(["train", "mlp", "--epochs", "1", "--out", str(tmp_path)]) == 0
    assert len(seen) == 1 and seen[0]["model"] == "mlp" and seen[0]["test_accuracy"] is not None


class _Terminal(io.StringIO):
    def isatty(self):
        return True


def test_fit_rewrites_the_progress_line_on_a_terminal():
    pe.manual_seed(0)
    train, _, _ = split_dataset(make_regression(n=101, features=3, seed=4), seed=0)
    term = _Terminal()
    fit(get_model("mlp", sizes=(3, 5, 1)), train, epochs=2, batch_size=8, task="regression", log=term)
    text = term.getvalue()
    # every epoch ends on a finished line that overwrote the running one in place
    finished = [part for part in text.split("\n") if part]
    assert len(finished) == 2
    assert all(part.startswith("\r") and "samples/s" in part for part in finished)


def test_fit_stops_on_a_non_finite_loss():
    pe.manual_seed(0)
    train, _, _ = split_dataset(make_regression(n=101, features=3, seed=4), seed=0)
    x, y = train.__getitems__(range(len(train)))
    bad = TensorDataset(x, y * float("inf"))
    with pytest.raises(FloatingPointError, match="training loss became inf at epoch 1, step 1"):
        fit(get_model("mlp", sizes=(3, 5, 1)), bad, epochs=1, batch_size=8, task="regression", verbose=False)


def test_no_command_prints_help(capsys):
    assert main([]) == 2
    assert "info" in capsys.readouterr().out


def test_info_blas_falls_back_to_numpy_build_config(monkeypatch):
    from pyengine.commands.info import numpy_blas

    monkeypatch.setitem(sys.modules, "threadpoolctl", None)  # makes `import threadpoolctl` fail
    expected = np.show_config(mode="dicts")["Build Dependencies"]["blas"]["name"]
    text = numpy_blas()
    assert text.startswith(expected) and text.endswith("(from numpy build config)")


@pytest.mark.parametrize("env,expected", [
    ({}, "on: glibc mmap threshold 32 MiB"),
    ({"PYENGINE_MALLOC_TUNING": "0"}, "off (PYENGINE_MALLOC_TUNING=0)"),
    ({"MALLOC_TRIM_THRESHOLD_": "131072"}, "off (the environment sets malloc's thresholds)"),
], ids=["default", "opt-out", "user-thresholds"])
def test_info_says_what_the_numpy_backend_told_malloc(env, expected):
    """The NumPy backend keeps freed memory on glibc (a process-wide setting, made on import):
    ``pyengine info`` says whether it did, and a user's own setting or the opt-out wins."""
    import platform

    if expected.startswith("on") and platform.libc_ver()[0] != "glibc":
        pytest.skip("the tuning applies to glibc only; this Python does not run on glibc")
    clean = {k: v for k, v in os.environ.items()
             if k not in ("PYENGINE_MALLOC_TUNING", "MALLOC_MMAP_THRESHOLD_", "MALLOC_TRIM_THRESHOLD_")}
    done = subprocess.run([sys.executable, "-m", "pyengine.cli", "info", "--json"], capture_output=True,
                          text=True, env={**clean, "PYTHONPATH": str(ROOT), **env}, timeout=120)
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["malloc_tuning"].startswith(expected)
