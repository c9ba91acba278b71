"""One classification training step as a function, written once for every benchmark that
times whole steps (the suite's cases, launch_trace, bench/variants/train_steps.py), in
pyengine or in PyTorch: the calls are the same in both."""
from __future__ import annotations


def benchmark_optimizer(lib, name, params):
    """``lib``'s (pyengine or torch) SGD with momentum 0.9 at lr 0.01, or Adam / AdamW at 1e-3
    with the library's other defaults (pyengine.train.make_optimizer is the training loop's,
    with a learning rate and weight decay to choose)."""
    optim = lib.optim
    if name == "sgd":
        return optim.SGD(params, lr=0.01, momentum=0.9)
    return {"adam": optim.Adam, "adamw": optim.AdamW}[name](params, lr=1e-3)


def classification_step(lib, model, xt, yt, opt):
    """step() -> loss: zero_grad, forward, cross-entropy of the logits' last axis against the
    flattened targets, backward, ``opt.step()``."""
    cross_entropy = lib.nn.functional.cross_entropy

    def step():
        opt.zero_grad()
        out = model(xt)
        loss = cross_entropy(out.reshape(-1, out.shape[-1]), yt.reshape(-1))
        loss.backward()
        opt.step()
        return loss
    return step
