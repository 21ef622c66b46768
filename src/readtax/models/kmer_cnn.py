"""A small k-mer read encoder that trains from scratch on a CPU in minutes (the baseline).

Input: one code per base (pad 0, A C G T 1..4, N 5; see :class:`~.tokenizers.BaseCollator`).
The model forms the k-mer starting at every position (canonical by default, so a read and its
reverse complement share k-mers), looks up its embedding, and optionally refines the embeddings
with residual 1D convolutions. With ``num_layers`` 0 (the tiny default) it is a bag of k-mer
embeddings: under the classifier's mean pooling and linear head, a linear model of the read's
k-mer profile (fastText-like), which learns species from a few thousand reads and costs one
embedding lookup per base. Hidden states are zero at padding after every layer, so a read gives
the same output alone or inside a padded batch.

Optionally (``hash_k`` > 0) each position also looks up its canonical ``hash_k``-mer (up to 31
bases) in a hashed table of ``hash_buckets`` rows of ``hash_dim``, concatenated to the k-mer
embedding: long k-mers are what tell strains and species apart on real genomes (Kraken2 matches
35-mers), and a 4^k table cannot hold them. The hash is a fixed universal hash over integers
(no overflow), so a saved model gives the same buckets on every machine.
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
# Optional keys (absent in configs written before the hashed table): hashed long k-mers.
HASH_KEYS = {"hash_k": 0, "hash_buckets": 0, "hash_dim": 0}

SIZES = {
    "tiny": {"k": 8, "embed_dim": 32, "hidden_size": 32, "num_layers": 0, "kernel_size": 3,
             "dropout": 0.0, "canonical": True, "max_length": 2048},
    "full": {"k": 10, "embed_dim": 64, "hidden_size": 256, "num_layers": 3, "kernel_size": 5,
             "dropout": 0.1, "canonical": True, "max_length": 4096},
}
# "base": the default recipe for real reads (init-model --arch kmer-cnn): the tiny bag plus
# 2^20 x 8 hashed 12-mers (benchmarks/real_genomes.py, benchmarks/RESULTS.md).
SIZES["base"] = {**SIZES["tiny"], "hidden_size": 40, "hash_k": 12, "hash_buckets": 1 << 20,
                 "hash_dim": 8}
MAX_K = 11  # the k-mer index table has 4^k entries
MAX_HASH_K = 31  # a canonical k-mer code fits an int64
HASH_P = 2_147_483_647  # 2^31 - 1: the hash's products stay below 2^63
HASH_A1, HASH_A2, HASH_B = 1_103_515_245, 1_664_525_013, 12_345


def make_config(size: str = "tiny", **overrides) -> dict:
    cfg = {"architectures": ["KmerCnn"], "model_type": MODEL_TYPE, **SIZES[size], **overrides,
           "readtax_version": __version__}
    return cfg


def input_dim(cfg: dict) -> int:
    """Width of one position's input vector: k-mer embedding plus hashed-k-mer embedding."""
    hashed = int(cfg.get("hash_dim", 0)) if int(cfg.get("hash_k", 0)) else 0
    return int(cfg["embed_dim"]) + hashed


def check_config(cfg: dict, path: Path | None = None) -> dict:
    missing = [k for k in CONFIG_KEYS if k not in cfg]
    if missing:
        raise ModelError(f"k-mer CNN config lacks {', '.join(missing)}", path)
    if not 1 <= int(cfg["k"]) <= MAX_K:
        raise ModelError(f"k-mer CNN k must be 1..{MAX_K}, got {cfg['k']}", path)
    if int(cfg["kernel_size"]) % 2 == 0:
        raise ModelError(f"k-mer CNN kernel_size must be odd, got {cfg['kernel_size']}", path)
    hash_k = int(cfg.get("hash_k", 0))
    if hash_k and not 1 <= hash_k <= MAX_HASH_K:
        raise ModelError(f"k-mer CNN hash_k must be 0 (off) or 1..{MAX_HASH_K}, got {hash_k}",
                         path)
    if hash_k and (int(cfg.get("hash_buckets", 0)) < 1 or int(cfg.get("hash_dim", 0)) < 1):
        raise ModelError(f"k-mer CNN hash_k {hash_k} needs hash_buckets >= 1 and hash_dim >= 1, "
                         f"got {cfg.get('hash_buckets')} and {cfg.get('hash_dim')}", path)
    if int(cfg["num_layers"]) == 0 and input_dim(cfg) != int(cfg["hidden_size"]):
        raise ModelError(f"a k-mer CNN without conv layers needs hidden_size == embed_dim "
                         f"(+ hash_dim with hash_k): {input_dim(cfg)}, got {cfg['hidden_size']}",
                         path)
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
        self.canonical = bool(config["canonical"])
        self.hash_k = int(config.get("hash_k", 0))
        self.hash_buckets = int(config.get("hash_buckets", 0))
        self.hash_embed = None
        if self.hash_k:
            self.hash_embed = nn.Embedding(self.hash_buckets + 1, int(config["hash_dim"]),
                                           padding_idx=0)
            with torch.no_grad():
                self.hash_embed.weight.normal_(0.0, 0.02)
                self.hash_embed.weight[0] = 0
        width = input_dim(config)
        self.conv_in = nn.Conv1d(width, self.hidden_size, ks, padding=ks // 2) if layers else None
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

    def hashed_ids(self, input_ids: torch.Tensor) -> torch.Tensor:
        """Row (1-based bucket) of the canonical ``hash_k``-mer starting at every position; 0
        where the window is incomplete or holds an N."""
        b, n = input_ids.shape
        k = self.hash_k
        base = input_ids.long() - 1
        valid = (base >= 0) & (base <= 3)
        base = F.pad(torch.where(valid, base, torch.zeros_like(base)), (0, k - 1))
        valid = F.pad(valid, (0, k - 1), value=False)
        fwd = torch.zeros((b, n), dtype=torch.int64, device=input_ids.device)
        rev = torch.zeros_like(fwd)
        ok = torch.ones((b, n), dtype=torch.bool, device=input_ids.device)
        for j in range(k):  # forward code, and the reverse complement's code built from its end
            x = base[:, j : j + n]
            fwd = fwd * 4 + x
            rev = rev + (3 - x) * (4**j)
            ok &= valid[:, j : j + n]
        code = torch.minimum(fwd, rev) if self.canonical else fwd
        h = ((code >> 31) * HASH_A1 + (code & HASH_P) * HASH_A2 + HASH_B) % HASH_P
        return torch.where(ok, h % self.hash_buckets + 1, torch.zeros_like(h))

    def embed_positions(self, input_ids: torch.Tensor, attention_mask: torch.Tensor
                        ) -> torch.Tensor:
        """``[B, L, input_dim]``: k-mer embedding (and hashed long-k-mer embedding) per base."""
        ids = self.kmer_ids(input_ids) * attention_mask.long()
        h = self.embed(ids)
        if self.hash_embed is not None:
            hids = self.hashed_ids(input_ids) * attention_mask.long()
            h = torch.cat([h, self.hash_embed(hids)], dim=-1)
        return h

    def _block(self, conv: nn.Module, h: torch.Tensor, m: torch.Tensor) -> torch.Tensor:
        return h + self.dropout(F.gelu(conv(h))) * m

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None
                ) -> torch.Tensor:
        if attention_mask is None:
            attention_mask = (input_ids != 0).long()
        h = self.embed_positions(input_ids, attention_mask)
        if self.conv_in is None:  # padding and N-holding windows use the zero row
            return h
        m = attention_mask.to(self.embed.weight.dtype).unsqueeze(1)  # [B, 1, L]
        h = h.transpose(1, 2)
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
