"""DNABERT-2 encoder, re-implemented on ``torch.nn.functional.scaled_dot_product_attention``.

Same computation as the official ``bert_layers.py`` (MosaicML BERT as used by
``zhihan1996/DNABERT-2-117M``), without remote code or Triton:

* embeddings: word + token type 0 -> LayerNorm (no position embeddings);
* per layer, post-LayerNorm: fused ``Wqkv`` (``[q | k | v]`` blocks, each split into heads) ->
  softmax(q.k / sqrt(d) + ALiBi + mask) v -> ``attention.output.dense`` -> LayerNorm(x + residual);
  then the gated MLP: ``gated_layers`` (no bias) -> gelu(first half) * second half -> ``wo`` ->
  ``layernorm``(x + residual);
* ALiBi bias ``-slope_h * |i - j|`` with the paper's slopes (non-power-of-2 head counts take
  the interleaved slopes of the next power of 2), for any sequence length;
* padding keys get ``-10000`` added (the official additive mask), and padded positions of the
  output are 0, as the official code returns them.

Two attention paths with the same outputs: the padded one (SDPA with one ``[B, heads, S, S]``
bias built per forward in the compute dtype, shared by every layer) and an unpadded one that
runs the layers on the real tokens only (``[T, H]``) and attends per read with ALiBi slopes:
flash-attn's varlen kernel when it is importable and the model is on CUDA, a per-read torch
reference otherwise (tests compare it with the padded path on CPU).

Module and parameter names follow the official checkpoint, so its state dict loads after the
``bert.`` prefix is removed (the MLM head ``cls.*`` is ignored).
"""

from __future__ import annotations

import functools
import math
from pathlib import Path

import torch
from torch import nn
from torch.nn import functional as F

from ..errors import ModelError

# The real config.json's keys, in its order; values of the released 117M model.
REAL_CONFIG = {
    "_name_or_path": "zhihan1996/DNABERT-2-117M",
    "alibi_starting_size": 512,
    "attention_probs_dropout_prob": 0.0,
    "auto_map": {
        "AutoConfig": "configuration_bert.BertConfig",
        "AutoModel": "bert_layers.BertModel",
        "AutoModelForMaskedLM": "bert_layers.BertForMaskedLM",
        "AutoModelForSequenceClassification": "bert_layers.BertForSequenceClassification",
    },
    "classifier_dropout": None,
    "gradient_checkpointing": False,
    "hidden_act": "gelu",
    "hidden_dropout_prob": 0.1,
    "hidden_size": 768,
    "initializer_range": 0.02,
    "intermediate_size": 3072,
    "layer_norm_eps": 1e-12,
    "max_position_embeddings": 512,
    "num_attention_heads": 12,
    "num_hidden_layers": 12,
    "position_embedding_type": "absolute",
    "torch_dtype": "float32",
    "transformers_version": "4.28.0",
    "type_vocab_size": 2,
    "use_cache": True,
    "vocab_size": 4096,
}
REQUIRED = ("vocab_size", "hidden_size", "num_hidden_layers", "num_attention_heads",
            "intermediate_size")
# The official additive mask value for padding keys (not -inf: a fully padded row stays finite).
MASK_VALUE = -10000.0


def alibi_slopes(n_heads: int) -> list[float]:
    """Per-head ALiBi slopes exactly as the official code (and the ALiBi paper) compute them."""

    def power_of_2(n: int) -> list[float]:
        start = 2 ** (-(2 ** -(math.log2(n) - 3)))
        return [start * start**i for i in range(n)]

    if math.log2(n_heads).is_integer():
        return power_of_2(n_heads)
    closest = 2 ** math.floor(math.log2(n_heads))
    return power_of_2(closest) + alibi_slopes(2 * closest)[0::2][: n_heads - closest]


def alibi_bias(n_heads: int, seq_len: int, device=None,
               slopes: torch.Tensor | None = None) -> torch.Tensor:
    """``[heads, S, S]`` float32 bias ``-slope_h * |i - j|`` (the official table, any length)."""
    pos = torch.arange(seq_len, device=device)
    dist = (pos[None, :] - pos[:, None]).abs()
    if slopes is None:
        slopes = torch.tensor(alibi_slopes(n_heads), dtype=torch.float32, device=device)
    return slopes.float()[:, None, None] * -dist[None]


@functools.cache
def _flash_varlen():
    """flash-attn's varlen kernel (with ALiBi slopes), or None when flash-attn is absent."""
    try:
        from flash_attn import flash_attn_varlen_func
    except ImportError:
        return None
    return flash_attn_varlen_func


def compute_dtype(x: torch.Tensor) -> torch.dtype:
    """The dtype matmuls run in: the autocast dtype inside autocast, else ``x``'s dtype."""
    if torch.is_autocast_enabled(x.device.type):
        return torch.get_autocast_dtype(x.device.type)
    return x.dtype


class Unpadded:
    """What the unpadded attention needs: read boundaries in the flat token axis and slopes."""

    def __init__(self, cu_seqlens: torch.Tensor, max_seqlen: int, slopes: torch.Tensor,
                 use_flash: bool) -> None:
        self.cu_seqlens = cu_seqlens
        self.max_seqlen = max_seqlen
        self.slopes = slopes
        self.use_flash = use_flash


def _varlen_reference(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, info: Unpadded,
                      dropout_p: float) -> torch.Tensor:
    """``[T, heads, d]`` attention read by read with the ALiBi bias (the CPU stand-in for the
    flash-attn varlen kernel)."""
    out = torch.empty_like(q)
    bounds = info.cu_seqlens.tolist()
    for a, b in zip(bounds[:-1], bounds[1:]):
        if b == a:
            continue
        bias = alibi_bias(q.shape[1], b - a, q.device, info.slopes).to(q.dtype)
        o = F.scaled_dot_product_attention(q[a:b].transpose(0, 1), k[a:b].transpose(0, 1),
                                           v[a:b].transpose(0, 1), attn_mask=bias,
                                           dropout_p=dropout_p)
        out[a:b] = o.transpose(0, 1)
    return out


class _Embeddings(nn.Module):
    def __init__(self, cfg: dict) -> None:
        super().__init__()
        h = cfg["hidden_size"]
        self.word_embeddings = nn.Embedding(cfg["vocab_size"], h)
        self.token_type_embeddings = nn.Embedding(cfg.get("type_vocab_size", 2), h)
        self.LayerNorm = nn.LayerNorm(h, eps=cfg.get("layer_norm_eps", 1e-12))
        self.dropout = nn.Dropout(cfg.get("hidden_dropout_prob", 0.0))

    def forward(self, input_ids: torch.Tensor, token_type_ids: torch.Tensor | None) -> torch.Tensor:
        if token_type_ids is None:
            token_type_ids = torch.zeros_like(input_ids)
        x = self.word_embeddings(input_ids) + self.token_type_embeddings(token_type_ids)
        return self.dropout(self.LayerNorm(x))


class _SelfAttention(nn.Module):
    def __init__(self, cfg: dict) -> None:
        super().__init__()
        h = cfg["hidden_size"]
        self.heads = cfg["num_attention_heads"]
        if h % self.heads:
            raise ModelError(f"hidden_size {h} is not a multiple of num_attention_heads "
                             f"{self.heads}")
        self.head_dim = h // self.heads
        self.Wqkv = nn.Linear(h, 3 * h)
        self.p_dropout = cfg.get("attention_probs_dropout_prob", 0.0)

    def forward(self, x: torch.Tensor, bias: torch.Tensor | Unpadded) -> torch.Tensor:
        p = self.p_dropout if self.training else 0.0
        if isinstance(bias, Unpadded):
            t, h = x.shape
            q, k, v = self.Wqkv(x).view(t, 3, self.heads, self.head_dim).unbind(1)
            if bias.use_flash:
                out = _flash_varlen()(q, k, v, bias.cu_seqlens, bias.cu_seqlens, bias.max_seqlen,
                                      bias.max_seqlen, dropout_p=p,
                                      alibi_slopes=bias.slopes.float())
            else:
                out = _varlen_reference(q, k, v, bias, p)
            return out.reshape(t, h)
        b, s, h = x.shape
        qkv = self.Wqkv(x).view(b, s, 3, self.heads, self.head_dim).permute(2, 0, 3, 1, 4)
        out = F.scaled_dot_product_attention(qkv[0], qkv[1], qkv[2], attn_mask=bias, dropout_p=p)
        return out.transpose(1, 2).reshape(b, s, h)


class _SelfOutput(nn.Module):
    def __init__(self, cfg: dict) -> None:
        super().__init__()
        h = cfg["hidden_size"]
        self.dense = nn.Linear(h, h)
        self.LayerNorm = nn.LayerNorm(h, eps=cfg.get("layer_norm_eps", 1e-12))
        self.dropout = nn.Dropout(cfg.get("hidden_dropout_prob", 0.0))

    def forward(self, x: torch.Tensor, residual: torch.Tensor) -> torch.Tensor:
        return self.LayerNorm(self.dropout(self.dense(x)) + residual)


class _Attention(nn.Module):
    def __init__(self, cfg: dict) -> None:
        super().__init__()
        self.self = _SelfAttention(cfg)
        self.output = _SelfOutput(cfg)

    def forward(self, x: torch.Tensor, bias: torch.Tensor | Unpadded) -> torch.Tensor:
        return self.output(self.self(x, bias), x)


class _GatedMLP(nn.Module):
    def __init__(self, cfg: dict) -> None:
        super().__init__()
        h, i = cfg["hidden_size"], cfg["intermediate_size"]
        self.intermediate = i
        self.gated_layers = nn.Linear(h, 2 * i, bias=False)
        self.wo = nn.Linear(i, h)
        self.layernorm = nn.LayerNorm(h, eps=cfg.get("layer_norm_eps", 1e-12))
        self.dropout = nn.Dropout(cfg.get("hidden_dropout_prob", 0.0))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        g = self.gated_layers(x)
        y = F.gelu(g[..., : self.intermediate]) * g[..., self.intermediate :]
        return self.layernorm(self.wo(self.dropout(y)) + x)


class _Layer(nn.Module):
    def __init__(self, cfg: dict) -> None:
        super().__init__()
        self.attention = _Attention(cfg)
        self.mlp = _GatedMLP(cfg)

    def forward(self, x: torch.Tensor, bias: torch.Tensor | Unpadded) -> torch.Tensor:
        return self.mlp(self.attention(x, bias))


class _Encoder(nn.Module):
    def __init__(self, cfg: dict) -> None:
        super().__init__()
        self.layer = nn.ModuleList(_Layer(cfg) for _ in range(cfg["num_hidden_layers"]))


ATTN_IMPLS = ("auto", "sdpa", "varlen")


class DnaBert2Model(nn.Module):
    """``(input_ids, attention_mask) -> last_hidden_state [B, S, H]`` (zeros at padding).

    ``attn_impl``: ``sdpa`` (padded), ``varlen`` (unpadded: flash-attn on CUDA when importable,
    else the torch reference) or ``auto`` (varlen where flash-attn can run, else sdpa).
    """

    def __init__(self, config: dict) -> None:
        super().__init__()
        missing = [k for k in REQUIRED if k not in config]
        if missing:
            raise ModelError(f"DNABERT-2 config lacks {', '.join(missing)}")
        act = config.get("hidden_act", "gelu")
        if act != "gelu":
            raise ModelError(f"DNABERT-2 config hidden_act {act!r} is not supported (gelu)")
        self.config = dict(config)
        self.hidden_size = int(config["hidden_size"])
        self.num_heads = int(config["num_attention_heads"])
        self.embeddings = _Embeddings(self.config)
        self.encoder = _Encoder(self.config)
        self.gradient_checkpointing = False
        self.attn_impl = "auto"
        # On the module's device from the start (no host->device copy per forward); not in the
        # state dict (the official checkpoint has no such key); kept fp32 by _apply below.
        self.register_buffer("alibi_slopes",
                             torch.tensor(alibi_slopes(self.num_heads), dtype=torch.float32),
                             persistent=False)

    def _apply(self, fn, recurse=True):
        slopes = self.alibi_slopes
        super()._apply(fn, recurse)
        # Follow device moves but never a dtype cast: bf16 slopes would shift the bias.
        self.alibi_slopes = slopes.to(device=self.alibi_slopes.device, dtype=torch.float32)
        return self

    def attention_bias(self, attention_mask: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
        """``[B, heads, S, S]``: ALiBi plus -10000 on padding keys (official semantics), summed in
        fp32 and converted once to ``dtype``."""
        s = attention_mask.shape[1]
        alibi = alibi_bias(self.num_heads, s, attention_mask.device, self.alibi_slopes)[None]
        pad = (1.0 - attention_mask[:, None, None, :].float()) * MASK_VALUE
        return (alibi + pad).to(dtype)

    def _flash_ok(self, x: torch.Tensor) -> bool:
        """flash-attn runs here: importable, CUDA, half-precision compute."""
        return (x.is_cuda and compute_dtype(x) in (torch.float16, torch.bfloat16)
                and _flash_varlen() is not None)

    def _run_layers(self, x: torch.Tensor, bias: torch.Tensor | Unpadded) -> torch.Tensor:
        for layer in self.encoder.layer:
            if self.gradient_checkpointing and self.training:
                from torch.utils.checkpoint import checkpoint

                x = checkpoint(layer, x, bias, use_reentrant=False)
            else:
                x = layer(x, bias)
        return x

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None,
                token_type_ids: torch.Tensor | None = None) -> torch.Tensor:
        if attention_mask is None:
            attention_mask = torch.ones_like(input_ids)
        x = self.embeddings(input_ids, token_type_ids)
        flash = self._flash_ok(x)
        if not (self.attn_impl == "varlen" or (self.attn_impl == "auto" and flash)):
            x = self._run_layers(x, self.attention_bias(attention_mask, compute_dtype(x)))
            return x * attention_mask.unsqueeze(-1).to(x.dtype)
        b, s, h = x.shape
        keep = attention_mask.reshape(-1).bool()
        lengths = attention_mask.sum(1, dtype=torch.int32)
        cu = F.pad(torch.cumsum(lengths, 0, dtype=torch.int32), (1, 0))
        # The padded width bounds every read's length: no host sync for the true maximum.
        info = Unpadded(cu, s, self.alibi_slopes, flash)
        tokens = self._run_layers(x.reshape(b * s, h)[keep], info)
        out = tokens.new_zeros(b * s, h)
        out[keep] = tokens
        return out.view(b, s, h)


def encoder_state_dict(state: dict[str, torch.Tensor], path: Path | None = None
                       ) -> dict[str, torch.Tensor]:
    """Official checkpoint keys -> this module's keys: strip ``bert.``, drop ``cls.*``/pooler."""
    out = {}
    for key, value in state.items():
        if key.startswith(("cls.", "bert.pooler.", "pooler.")):
            continue  # MLM head (decoder weight tied or not) and an absent/unused pooler
        name = key.removeprefix("bert.")
        if name.endswith("position_ids"):
            continue
        out[name] = value
    if not out:
        raise ModelError("no DNABERT-2 encoder weights (bert.*) in the checkpoint", path)
    return out


def official_state_dict(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """This module's keys -> the official checkpoint's (``bert.`` prefix)."""
    return {f"bert.{k}": v for k, v in state.items()}


def load_model(config: dict, state: dict[str, torch.Tensor], *, dtype=torch.float32,
               path: Path | None = None) -> DnaBert2Model:
    """Build from ``config.json`` content and load an official (or readtax-saved) state dict."""
    model = DnaBert2Model(config)
    weights = encoder_state_dict(state, path)
    own = model.state_dict()
    missing = sorted(set(own) - set(weights))
    unexpected = sorted(set(weights) - set(own))
    if missing or unexpected:
        raise ModelError(f"weights do not fit a DNABERT-2 encoder (missing {missing[:4]}, "
                         f"unexpected {unexpected[:4]})", path)
    for k, v in weights.items():
        if tuple(v.shape) != tuple(own[k].shape):
            raise ModelError(f"weight {k} has shape {tuple(v.shape)}, the config expects "
                             f"{tuple(own[k].shape)}", path)
    model.load_state_dict(weights, strict=True)
    return model.to(dtype)


def init_weights(model: nn.Module, std: float) -> None:
    """BERT-style random init (normal weights, zero biases, unit LayerNorm)."""
    for m in model.modules():
        if isinstance(m, nn.Linear | nn.Embedding):
            nn.init.normal_(m.weight, std=std)
            if getattr(m, "bias", None) is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, nn.LayerNorm):
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)


def mlm_head_state(config: dict, generator: torch.Generator) -> dict[str, torch.Tensor]:
    """Random weights for the MLM head keys of an official checkpoint (layout parity only)."""
    h, v = config["hidden_size"], config["vocab_size"]
    std = config.get("initializer_range", 0.02)
    return {
        "cls.predictions.decoder.bias": torch.zeros(v),
        "cls.predictions.transform.LayerNorm.bias": torch.zeros(h),
        "cls.predictions.transform.LayerNorm.weight": torch.ones(h),
        "cls.predictions.transform.dense.bias": torch.zeros(h),
        "cls.predictions.transform.dense.weight": torch.randn(h, h, generator=generator) * std,
    }
