"""A small BERT-style encoder classifier: token + learned position embeddings, a stack of
pre-norm ``nn.TransformerEncoderLayer`` (GELU), mean pooling over the non-padding positions,
and a linear head. BERT pools a [CLS] token instead; the mean needs no extra token and
learns faster at this size."""
from __future__ import annotations

import pyengine as pe
from pyengine import nn


class EncoderClassifier(nn.Module):
    def __init__(self, vocab_size: int, num_classes: int, d_model: int = 64, nhead: int = 4,
                 num_layers: int = 2, dim_feedforward: int = 128, max_len: int = 64,
                 dropout: float = 0.1, pad_idx: int | None = None):
        super().__init__()
        self.max_len, self.pad_idx = max_len, pad_idx
        self.tok = nn.Embedding(vocab_size, d_model)
        self.pos = nn.Embedding(max_len, d_model)
        layer = nn.TransformerEncoderLayer(d_model, nhead, dim_feedforward, dropout,
                                           activation="gelu", batch_first=True, norm_first=True)
        self.encoder = nn.TransformerEncoder(layer, num_layers, norm=nn.LayerNorm(d_model))
        self.head = nn.Linear(d_model, num_classes)

    def forward(self, idx):
        """Class logits (B, num_classes) for token ids (B, T)."""
        if idx.ndim != 2:
            raise ValueError(f"EncoderClassifier expects token ids (B, T), got {tuple(idx.shape)}")
        B, T = idx.shape
        if T > self.max_len:
            raise ValueError(f"EncoderClassifier: sequence length {T} exceeds max_len {self.max_len}")
        x = self.tok(idx) + self.pos(pe.arange(T, device=idx.device))
        if self.pad_idx is None:
            return self.head(self.encoder(x).mean(dim=1))
        pad = idx == self.pad_idx
        h = self.encoder(x, src_key_padding_mask=pad)
        keep = (idx != self.pad_idx).to(h.dtype).unsqueeze(-1)
        return self.head((h * keep).sum(dim=1) / keep.sum(dim=1))
