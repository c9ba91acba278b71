"""GPT and CharRNN: against a PyTorch reference with copied weights, generation, the text
corpus and the synthetic tasks, and that both models learn."""
from pathlib import Path

import numpy as np
import pytest

import pyengine as pe
from pyengine import nn
from pyengine.data.sequence_tasks import IGNORE_INDEX, as_language_model, make_task
from pyengine.data.text import CharTokenizer, CharWindows, TextCorpus, split_by_position
from pyengine.models import GPT, CharRNN


@pytest.fixture
def torch_gpt(monkeypatch):
    """The PyTorch twin of GPT that bench/cpu_vs_torch_seq.py times against."""
    monkeypatch.syspath_prepend(str(Path(__file__).resolve().parents[1] / "bench"))
    from cpu_vs_torch_seq import torch_gpt

    return torch_gpt


@pytest.mark.torch
@pytest.mark.parametrize("B,T", [(1, 1), (3, 17), (2, 33)])
def test_gpt_matches_torch(B, T, rng, torch_gpt):
    torch = pytest.importorskip("torch")
    ours = GPT(vocab_size=11, block_size=33, n_layer=2, n_head=2, n_embd=16).double()
    theirs = torch_gpt(11, 33, 2, 2, 16).double()
    assert list(ours.state_dict()) == list(theirs.state_dict())
    theirs.load_state_dict({k: torch.tensor(v.detach().numpy()) for k, v in ours.state_dict().items()})
    idx = rng.integers(0, 11, size=(B, T))
    target = rng.integers(0, 11, size=(B, T))
    lt, lp = theirs(torch.tensor(idx)), ours(pe.tensor(idx))
    np.testing.assert_allclose(lp.detach().numpy(), lt.detach().numpy(), rtol=1e-9, atol=1e-11)
    torch.nn.functional.cross_entropy(lt.reshape(-1, 11), torch.tensor(target).reshape(-1)).backward()
    nn.functional.cross_entropy(lp.reshape(-1, 11), pe.tensor(target).reshape(-1)).backward()
    grads = dict(theirs.named_parameters())
    assert len(list(ours.parameters())) == len(grads)  # the tied weight counted once
    for name, p in ours.named_parameters():
        np.testing.assert_allclose(p.grad.detach().numpy(), grads[name].grad.detach().numpy(), rtol=1e-8, atol=1e-11,
                                   err_msg=name)


def test_gpt_weight_tying_and_errors():
    model = GPT(vocab_size=7, block_size=8, n_layer=1, n_head=2, n_embd=8)
    assert model.lm_head.weight is model.wte.weight
    with pytest.raises(ValueError, match=r"length 9 exceeds block_size 8"):
        model(pe.zeros(1, 9, dtype=pe.int64))
    with pytest.raises(ValueError, match=r"\(B, T\).*\(9,\)"):
        model(pe.zeros(9, dtype=pe.int64))
    with pytest.raises(ValueError, match=r"n_embd \(10\).*n_head \(3\)"):
        GPT(vocab_size=7, n_embd=10, n_head=3)


@pytest.mark.parametrize("make", [
    lambda: GPT(vocab_size=13, block_size=6, n_layer=1, n_head=2, n_embd=8),
    lambda: CharRNN(vocab_size=13, embed_dim=5, hidden_size=7, cell="gru"),
], ids=["gpt", "charrnn"])
def test_generate(make, rng):
    model = make()
    idx = pe.tensor(rng.integers(0, 13, size=(2, 4)))
    pe.manual_seed(5)
    a = model.generate(idx, 9, temperature=0.8, top_k=4).detach().numpy()
    pe.manual_seed(5)
    b = model.generate(idx, 9, temperature=0.8, top_k=4).detach().numpy()
    assert a.shape == (2, 13) and a.dtype == np.int64
    np.testing.assert_array_equal(a, b)
    np.testing.assert_array_equal(a[:, :4], idx.detach().numpy())
    assert a.min() >= 0 and a.max() < 13
    greedy = model.generate(idx, 3, temperature=0).detach().numpy()
    top1 = model.generate(idx, 3, top_k=1).detach().numpy()
    np.testing.assert_array_equal(greedy, top1)
    with pe.no_grad():  # the greedy token is the argmax of the logits given the prefix
        first = model(idx)[:, -1, :].detach().numpy().argmax(-1)
    np.testing.assert_array_equal(greedy[:, 4], first)


def test_charrnn_generate_carries_state(rng):
    """Generation one token at a time with the carried state gives the logits a full pass gives."""
    model = CharRNN(vocab_size=9, embed_dim=4, hidden_size=6, num_layers=2, cell="lstm")
    ids = model.generate(pe.tensor(rng.integers(0, 9, size=(1, 3))), 5, temperature=0).detach().numpy()
    with pe.no_grad():
        full = model(pe.tensor(ids[:, :-1])).detach().numpy()
    np.testing.assert_array_equal(full[0, 2:].argmax(-1), ids[0, 3:])


def test_text_corpus_and_windows():
    corpus = TextCorpus()
    assert len(corpus.text) > 100_000 and 60 <= corpus.vocab_size <= 200
    tok = corpus.tokenizer
    sample = corpus.text[1000:1300]
    assert tok.decode(tok.encode(sample)) == sample
    joined = np.concatenate([corpus.train_ids, corpus.val_ids, corpus.test_ids])
    np.testing.assert_array_equal(joined, tok.encode(corpus.text))
    assert len(corpus.val_ids) == int(0.05 * len(joined))
    ids = np.arange(23)
    w = CharWindows(ids, 5)
    assert len(w) == 4
    x, y = w.__getitems__([3, 0])
    np.testing.assert_array_equal(x.detach().numpy(), [[15, 16, 17, 18, 19], [0, 1, 2, 3, 4]])
    np.testing.assert_array_equal(y.detach().numpy(), x.detach().numpy() + 1)
    unigram = corpus.unigram_loss("val")
    counts = np.bincount(corpus.train_ids, minlength=corpus.vocab_size) + 1
    assert unigram == pytest.approx(-np.mean(np.log(counts / counts.sum())[corpus.val_ids]))
    with pytest.raises(ValueError, match="not in the vocabulary"):
        CharTokenizer("abc").encode("abd")
    with pytest.raises(ValueError, match="summing to 1"):
        split_by_position(ids, (0.5, 0.2, 0.2))


def test_sequence_tasks():
    for name in ("copy", "reverse", "sort"):
        src, tgt = make_task(name, 50, length=7, vocab=5, seed=2)
        for s, t in zip(src.tolist(), tgt.tolist()):
            expected = {"copy": s, "reverse": s[::-1], "sort": sorted(s)}[name]
            assert t == expected
    src, tgt = make_task("add", 40, length=3, seed=1)
    for s, t in zip(src.tolist(), tgt.tolist()):
        a = int("".join(map(str, s[:3])))
        b = int("".join(map(str, s[3:])))
        assert int("".join(map(str, t[::-1]))) == a + b
    a1, _ = make_task("sort", 5, seed=9)
    a2, _ = make_task("sort", 5, seed=9)
    np.testing.assert_array_equal(a1, a2)
    x, y = as_language_model(np.array([[1, 2]]), np.array([[3, 4]]), sep=9)
    np.testing.assert_array_equal(x, [[1, 2, 9, 3]])
    np.testing.assert_array_equal(y, [[IGNORE_INDEX, IGNORE_INDEX, 3, 4]])
    with pytest.raises(ValueError, match="unknown sequence task"):
        make_task("rotate", 3)


def _train_lm(model, x, y, steps, lr, batch=64, seed=0):
    opt = pe.optim.Adam(model.parameters(), lr=lr)
    rng = np.random.default_rng(seed)
    for _ in range(steps):
        i = rng.integers(0, len(x), batch)
        logits = model(pe.tensor(x[i]))
        loss = nn.functional.cross_entropy(logits.reshape(-1, logits.shape[-1]), pe.tensor(y[i]).reshape(-1))
        opt.zero_grad()
        loss.backward()
        opt.step()
    return model


def _answer_accuracy(model, x, y):
    model.eval()
    with pe.no_grad():
        pred = model(pe.tensor(x)).detach().numpy().argmax(-1)
    scored = y != IGNORE_INDEX
    return (pred[scored] == y[scored]).mean()


SMALL_MODELS = {
    "gpt": lambda V, T: GPT(vocab_size=V, block_size=T, n_layer=2, n_head=2, n_embd=32),
    "lstm": lambda V, T: CharRNN(vocab_size=V, embed_dim=16, hidden_size=64, cell="lstm"),
    "gru": lambda V, T: CharRNN(vocab_size=V, embed_dim=16, hidden_size=64, cell="gru"),
}


@pytest.mark.slow
@pytest.mark.parametrize("kind,task,length,steps,lr", [
    ("gpt", "copy", 5, 250, 3e-3), ("gpt", "reverse", 5, 250, 3e-3), ("gpt", "sort", 5, 400, 3e-3),
    ("gpt", "add", 2, 1200, 5e-3), ("lstm", "copy", 5, 400, 1e-2), ("gru", "reverse", 5, 400, 1e-2),
])
def test_learns_sequence_task(kind, task, length, steps, lr):
    """Held-out answer-token accuracy >= 95% (teacher forcing) after a few hundred steps."""
    pe.manual_seed(0)
    vocab = 10 if task == "add" else 6
    x, y = as_language_model(*make_task(task, 4000, length, vocab, seed=1), sep=vocab)
    xv, yv = as_language_model(*make_task(task, 500, length, vocab, seed=2), sep=vocab)
    model = SMALL_MODELS[kind](vocab + 1, x.shape[1])
    _train_lm(model, x, y, steps, lr=lr)
    acc = _answer_accuracy(model, xv, yv)
    assert acc >= 0.95, f"{kind} on {task}: held-out answer accuracy {acc:.3f}"


@pytest.mark.slow
@pytest.mark.parametrize("make,steps,lr", [
    (lambda V: CharRNN(vocab_size=V, embed_dim=32, hidden_size=128, cell="lstm"), 200, 1e-2),
    (lambda V: GPT(vocab_size=V, block_size=32, n_layer=2, n_head=4, n_embd=64), 350, 5e-3),
], ids=["charrnn", "gpt"])
def test_language_model_beats_unigram(make, steps, lr):
    """Validation loss on held-out text (the split after the training text) falls clearly
    below the unigram baseline: the model learned context, not just letter frequencies."""
    pe.manual_seed(0)
    corpus = TextCorpus()
    model = make(corpus.vocab_size)
    rng = np.random.default_rng(0)
    opt = pe.optim.Adam(model.parameters(), lr=lr)
    T = 32
    for _ in range(steps):
        starts = rng.integers(0, len(corpus.train_ids) - T - 1, size=32)
        chunk = corpus.train_ids[starts[:, None] + np.arange(T + 1)]
        logits = model(pe.tensor(chunk[:, :-1]))
        loss = nn.functional.cross_entropy(logits.reshape(-1, corpus.vocab_size),
                                           pe.tensor(chunk[:, 1:]).reshape(-1))
        opt.zero_grad()
        loss.backward()
        opt.step()
    model.eval()
    val = corpus.windows("val", T)
    x, y = val.__getitems__(range(min(len(val), 400)))
    with pe.no_grad():
        logits = model(x)
        val_loss = nn.functional.cross_entropy(logits.reshape(-1, corpus.vocab_size), y.reshape(-1)).item()
    unigram = corpus.unigram_loss("val")
    assert val_loss < unigram - 0.5, f"validation loss {val_loss:.3f} vs unigram {unigram:.3f}"


@pytest.mark.parametrize("name", ["charrnn", "gpt"])
def test_train_command_path_reports_perplexity_and_sample(name, tmp_path):
    """The registered text models train through the shared loop, and the report prints the
    perplexity (exp of each epoch's validation loss) and a sample of decodable text."""
    import io
    import math

    from pyengine.data.text import default_corpus, report_language_model
    from pyengine.train import train_model

    history = train_model(name, epochs=1, batch_size=8, max_steps=2, out=tmp_path, log=None)
    out = io.StringIO()
    sample = report_language_model(name, history, prompt="def ", max_new_tokens=20, stream=out)
    assert f"{math.exp(history['val_loss'][0]):.2f}" in out.getvalue()
    assert sample.startswith("def ") and len(sample) == 24
    assert set(sample) <= set(default_corpus().tokenizer.chars)


@pytest.mark.gpu
def test_gpt_cuda_matches_cpu(rng):
    """Logits, loss gradient and generation of the same GPT on the GPU and the CPU."""
    cpu = GPT(vocab_size=65, block_size=33, n_layer=2, n_head=4, n_embd=64)
    gpu = GPT(vocab_size=65, block_size=33, n_layer=2, n_head=4, n_embd=64)
    gpu.load_state_dict(cpu.state_dict())
    gpu.to("cuda")
    idx = rng.integers(0, 65, size=(3, 33))
    results = []
    for model, device in ((cpu, "cpu"), (gpu, "cuda")):
        x = pe.tensor(idx, device=device)
        logits = model(x)
        loss = nn.functional.cross_entropy(logits.reshape(-1, 65), x.reshape(-1))
        loss.backward()
        results.append([logits.detach().cpu().numpy(), model.wte.weight.grad.cpu().numpy(),
                        model.generate(x[:, :5], 6, temperature=0).cpu().numpy()])
    for ours, ref in zip(results[1][:2], results[0][:2]):
        np.testing.assert_allclose(ours, ref, rtol=1e-3, atol=1e-4)
    assert results[1][2].shape == (3, 11)
