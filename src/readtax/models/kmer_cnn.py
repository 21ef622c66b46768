"""A small k-mer read encoder that trains from scratch on a CPU in minutes (the baseline).

Input: one code per base (pad 0, A C G T 1..4, N 5; see :class:`~.tokenizers.BaseCollator`).
The model forms the k-mer starting at every position (canonical by default, so a read and its
reverse complement share k-mers), looks up its embedding, and optionally refines the embeddings
with residual 1D convolutions. With ``num_layers`` 0 (the tiny default) it is a bag of k-mer
embeddings: under the classifier's mean pooling and linear head, a linear model of the read's
k-mer profile (fastText-like), which learns species from a few thousand reads and costs one
embedding lookup per base. Hidden states are zero at padding after every layer, so a read gives
the same output alone or inside a padded batch.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from .. import __version__
from ..errors import ModelError

MODEL_TYPE = "readtax-kmer-cnn"

CONFIG_KEYS = ("k", "embed_dim", "hidden_size", "num_layers", "kernel_size", "dropout",
               "canonical", "max_length")

SIZES = {
    "tiny": {"k": 8, "embed_dim": 32, "hidden_size": 32, "num_layers": 0, "kernel_size": 3,
             "dropout": 0.0, "canonical": True, "max_length": 2048},
    "full": {"k": 10, "embed_dim": 64, "hidden_size": 256, "num_layers": 3, "kernel_size": 5,
             "dropout": 0.1, "canonical": True, "max_length": 4096},
}
MAX_K = 11  # the k-mer index table has 4^k entries


def make_config(size: str = "tiny", **overrides) -> dict:
    cfg = {"architectures": ["KmerCnn"], "model_type": MODEL_TYPE, **SIZES[size], **overrides,
           "readtax_version": __version__}
    return cfg


def check_config(cfg: dict, path: Path | None = None) -> dict:
    missing = [k for k in CONFIG_KEYS if k not in cfg]
    if missing:
        raise ModelError(f"k-mer CNN config lacks {', '.join(missing)}", path)
    if not 1 <= int(cfg["k"]) <= MAX_K:
        raise ModelError(f"k-mer CNN k must be 1..{MAX_K}, got {cfg['k']}", path)
    if int(cfg["kernel_size"]) % 2 == 0:
        raise ModelError(f"k-mer CNN kernel_size must be odd, got {cfg['kernel_size']}", path)
    if int(cfg["num_layers"]) == 0 and int(cfg["embed_dim"]) != int(cfg["hidden_size"]):
        raise ModelError("a k-mer CNN without conv layers needs embed_dim == hidden_size", path)
    return cfg


class KmerCnn(nn.Module):
    """Base codes ``[B, L]`` + mask -> hidden states ``[B, L, hidden_size]``."""

    def __init__(self, config: dict) -> None:
        super().__init__()
        self.config = dict(config)
        k = int(config["k"])
        self.k = k
        self.hidden_size = int(config["hidden_size"])
        ks = int(config["kernel_size"])
        # Row 0: incomplete window or one holding N (zero vector, no gradient); row 1+c: k-mer c.
        embed_dim = int(config["embed_dim"])
        layers = int(config["num_layers"])
        index = self._kmer_index(k, bool(config["canonical"]))
        self.embed = nn.Embedding(int(index.max()) + 1, embed_dim, padding_idx=0)
        with torch.no_grad():  # small init: the bag starts near a uniform prediction
            self.embed.weight.normal_(0.0, 0.02)
            self.embed.weight[0] = 0
        # num_layers 0: a bag of k-mer embeddings (fastText-like); else convolutions on top.
        self.conv_in = nn.Conv1d(embed_dim, self.hidden_size, ks, padding=ks // 2) if layers else None
        self.convs = nn.ModuleList(
            nn.Conv1d(self.hidden_size, self.hidden_size, ks, padding=(ks // 2) * 2 ** (i + 1),
                      dilation=2 ** (i + 1))
            for i in range(layers - 1)
        )
        self.norm = nn.LayerNorm(self.hidden_size) if layers else None
        self.dropout = nn.Dropout(float(config["dropout"]))
        self.gradient_checkpointing = False
        self.register_buffer("kmer_index", index, persistent=False)

    @staticmethod
    def _kmer_index(k: int, canonical: bool) -> torch.Tensor:
        """Embedding row (1-based) of each k-mer code; a k-mer and its reverse complement share
        one row when ``canonical``, and rows are numbered compactly."""
        # numpy, so that building the model on the meta device (parameter counting) works
        codes = np.arange(4**k, dtype=np.int64)
        if not canonical:
            return torch.from_numpy((codes + 1).astype(np.int32))
        rc = np.zeros_like(codes)
        x = codes.copy()
        for _ in range(k):  # reverse the digits and complement each (c -> 3 - c)
            rc = rc * 4 + (3 - x % 4)
            x //= 4
        canon = np.minimum(codes, rc)
        rows = np.unique(canon)  # sorted
        return torch.from_numpy((np.searchsorted(rows, canon) + 1).astype(np.int32))

    def kmer_ids(self, input_ids: torch.Tensor) -> torch.Tensor:
        b, n = input_ids.shape
        k = self.k
        base = input_ids.long() - 1
        valid = (base >= 0) & (base <= 3)
        base = torch.where(valid, base, torch.zeros_like(base))
        base = F.pad(base, (0, k - 1))
        valid = F.pad(valid, (0, k - 1), value=False)
        code = torch.zeros((b, n), dtype=torch.int64, device=input_ids.device)
        ok = torch.ones((b, n), dtype=torch.bool, device=input_ids.device)
        for j in range(k):
            code = code * 4 + base[:, j : j + n]
            ok &= valid[:, j : j + n]
        return torch.where(ok, self.kmer_index[code].long(), torch.zeros_like(code))

    def _block(self, conv: nn.Module, h: torch.Tensor, m: torch.Tensor) -> torch.Tensor:
        return h + self.dropout(F.gelu(conv(h))) * m

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None
                ) -> torch.Tensor:
        if attention_mask is None:
            attention_mask = (input_ids != 0).long()
        ids = self.kmer_ids(input_ids) * attention_mask.long()
        if self.conv_in is None:  # padding and N-holding windows use the zero row
            return self.embed(ids)
        m = attention_mask.to(self.embed.weight.dtype).unsqueeze(1)  # [B, 1, L]
        h = self.embed(ids).transpose(1, 2)
        h = F.gelu(self.conv_in(h)) * m
        for conv in self.convs:
            if self.gradient_checkpointing and self.training:
                from torch.utils.checkpoint import checkpoint

                h = checkpoint(self._block, conv, h, m, use_reentrant=False)
            else:
                h = self._block(conv, h, m)
        return self.norm(h.transpose(1, 2)) * m.transpose(1, 2)


def load_config(model_dir: Path) -> dict:
    path = model_dir / "config.json"
    try:
        cfg = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ModelError("missing config.json", model_dir) from None
    return check_config(cfg, path)
