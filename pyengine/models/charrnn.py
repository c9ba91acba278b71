"""A character-level recurrent language model: Embedding -> LSTM or GRU -> Linear."""
from __future__ import annotations

import numpy as np

import pyengine as pe
from pyengine import nn

from .gpt import sample_next

CELLS = {"lstm": nn.LSTM, "gru": nn.GRU}


class CharRNN(nn.Module):
    def __init__(self, vocab_size: int = 65, embed_dim: int = 64, hidden_size: int = 128,
                 num_layers: int = 1, cell: str = "lstm", dropout: float = 0.0):
        super().__init__()
        if cell not in CELLS:
            raise ValueError(f"CharRNN cell must be one of {sorted(CELLS)}, got {cell!r}")
        self.cell = cell
        self.embed = nn.Embedding(vocab_size, embed_dim)
        self.rnn = CELLS[cell](embed_dim, hidden_size, num_layers, batch_first=True,
                               dropout=dropout)
        self.head = nn.Linear(hidden_size, vocab_size)

    def forward(self, idx):
        """Logits (B, T, vocab_size) for token ids (B, T), starting from a zero state."""
        return self.step(idx)[0]

    def step(self, idx, state=None):
        """(logits, state) continuing from ``state`` (as the LSTM/GRU returns it)."""
        if idx.ndim != 2:
            raise ValueError(f"CharRNN expects token ids of shape (B, T), got {tuple(idx.shape)}")
        out, state = self.rnn(self.embed(idx), state)
        return self.head(out), state

    def generate(self, idx, max_new_tokens: int, temperature: float = 1.0, top_k: int | None = None):
        """Extend ``idx`` (B, T) by ``max_new_tokens`` sampled tokens, carrying the
        recurrent state so each new token costs one step."""
        was_training = self.training
        self.eval()
        ids = idx.cpu().numpy()
        with pe.no_grad():
            logits, state = self.step(idx)
            for _ in range(max_new_tokens):
                nxt = sample_next(logits[:, -1, :], temperature, top_k)
                ids = np.concatenate([ids, nxt], axis=1)
                logits, state = self.step(pe.tensor(nxt, device=idx.device), state)
        self.train(was_training)
        return pe.tensor(ids, device=idx.device)
