"""Model families: recognising a model directory, loading its backbone and tokenizer, saving it.

A *backbone* is a module ``(input_ids, attention_mask) -> hidden states [B, S, H]``. Every family
provides one, plus the collator that turns a :class:`~readtax.batch.SeqBatch` into its inputs.
Which families exist, and what each needs, is recorded in :mod:`.families`; the loaders here are
the functions those records name.
"""

from __future__ import annotations

import contextlib
import json
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from ..errors import ModelError
from .families import ARCHS, WEIGHT_DTYPES, family
from .tokenizers import kmer_size_of_vocab

MODEL_FILE = "readtax_model.json"
WEIGHT_FILES = ("model.safetensors", "model.safetensors.index.json", "pytorch_model.bin",
                "pytorch_model.bin.index.json")


@dataclass
class Backbone:
    """A loaded backbone with what the classifier needs around it."""

    module: object  # torch.nn.Module: (input_ids, attention_mask) -> [B, S, H]
    hidden_size: int
    config: dict  # the backbone's config.json content
    collator: Callable
    tokenizer_files: dict[str, bytes] = field(default_factory=dict)


def check_arch(arch: str) -> str:
    return family(arch).name


def resolve_model_dir(path: str | os.PathLike[str]) -> Path:
    """A run directory or its ``model/`` subdirectory -> the saved classifier directory."""
    p = Path(path)
    if (p / MODEL_FILE).is_file():
        return p
    if (p / "model" / MODEL_FILE).is_file():
        return p / "model"
    if not p.exists():
        raise ModelError("no such run or model directory", p)
    raise ModelError(f"not a readtax run or model directory (no {MODEL_FILE} here or in model/)", p)


def read_config(model_dir: str | os.PathLike[str]) -> dict:
    d = Path(model_dir)
    if not d.is_dir():
        raise ModelError("model directory does not exist", d)
    path = d / "config.json"
    if not path.is_file():
        raise ModelError("missing config.json (not a model directory)", d)
    try:
        cfg = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise ModelError(f"config.json is not valid JSON: {exc}", path) from None
    if not isinstance(cfg, dict):
        raise ModelError("config.json is not a JSON object", path)
    return cfg


def arch_of_config(cfg: dict, path: Path | None = None) -> str:
    """The family a ``config.json`` describes."""
    from .kmer_cnn import MODEL_TYPE as KMER_CNN_TYPE

    model_type = cfg.get("model_type")
    auto_map = cfg.get("auto_map") or {}
    auto_refs = " ".join(str(v) for v in auto_map.values()) if isinstance(auto_map, dict) else ""
    if model_type == KMER_CNN_TYPE:
        return "kmer-cnn"
    # DNABERT-2's config has no model_type; its auto_map points at bert_layers (remote code).
    dnabert2_like = "alibi_starting_size" in cfg or "bert_layers" in auto_refs
    if dnabert2_like and model_type in (None, "bert"):
        return "dnabert2"
    if model_type == "llama":
        return "metagene" if cfg.get("vocab_size") == 1024 else "auto"
    if model_type == "bert" and kmer_size_of_vocab(int(cfg.get("vocab_size", 0))) is not None:
        return "dnabert"
    if model_type is not None and not auto_map:
        from transformers import CONFIG_MAPPING

        if model_type in CONFIG_MAPPING:
            return "auto"
    raise ModelError(
        f"config of an unknown model family (model_type {model_type!r}); supported: "
        f"{', '.join(ARCHS)} (auto = any transformers model type without remote code)", path)


def detect_arch(model_dir: str | os.PathLike[str]) -> str:
    """Family of a model directory: a saved classifier's recorded arch, else from config.json."""
    d = Path(model_dir)
    if (d / MODEL_FILE).is_file():
        try:
            return check_arch(json.loads((d / MODEL_FILE).read_text(encoding="utf-8"))["arch"])
        except (json.JSONDecodeError, KeyError, TypeError):
            raise ModelError(f"{MODEL_FILE} is damaged (no arch)", d / MODEL_FILE) from None
    return arch_of_config(read_config(d), d / "config.json")


def torch_dtype(name: str):
    import torch

    if name not in WEIGHT_DTYPES:
        raise KeyError(name)
    return getattr(torch, name)


def load_state_dict_file(model_dir: Path) -> dict:
    """Weights of a single-file checkpoint (safetensors preferred, else a torch pickle)."""
    import torch

    st = model_dir / "model.safetensors"
    if st.is_file():
        from safetensors.torch import load_file

        try:
            return load_file(str(st))
        except Exception as exc:  # noqa: BLE001 - safetensors' errors have no common base
            raise ModelError(f"model.safetensors is damaged (truncated or overwritten: "
                             f"{type(exc).__name__}: {str(exc)[:120]})", model_dir) from None
    pt = model_dir / "pytorch_model.bin"
    if pt.is_file():
        return torch.load(str(pt), map_location="cpu", weights_only=True)
    raise ModelError("missing weights (model.safetensors or pytorch_model.bin)", model_dir)


# -- per-family loaders ------------------------------------------------------------------------


@contextlib.contextmanager
def quiet_transformers():
    """Silence transformers' load reports and progress bars (we report problems ourselves)."""
    from transformers.utils import logging as hf_logging

    level = hf_logging.get_verbosity()
    bars = hf_logging.is_progress_bar_enabled()
    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()
    try:
        yield
    finally:
        hf_logging.set_verbosity(level)
        if bars:
            hf_logging.enable_progress_bar()


def _load_hf(model_dir: Path, cls, dtype: str, **kwargs):
    try:
        with quiet_transformers():
            model = cls.from_pretrained(str(model_dir), dtype=torch_dtype(dtype),
                                        local_files_only=True, **kwargs)
    except (OSError, ValueError, KeyError, RuntimeError) as exc:
        raise ModelError(f"cannot load the model: {exc}", model_dir) from None
    if getattr(model.config, "use_cache", None):
        model.config.use_cache = False  # classification needs no KV cache
    from .hf import HFBackbone

    return HFBackbone(model)


def _has_weights(model_dir: Path) -> bool:
    return any((model_dir / n).is_file() for n in WEIGHT_FILES)


def load_backbone(arch: str, model_dir: str | os.PathLike[str], *, dtype: str = "float32",
                  max_length: int | None = None, weights_dir: Path | None = None) -> Backbone:
    """Load the backbone and tokenizer of ``model_dir`` as family ``arch``.

    ``weights_dir`` (saved classifiers whose backbone weights stay with the base model) supplies
    the weights; config and tokenizer always come from ``model_dir``.
    """
    load = family(arch).load_function()
    d = Path(model_dir)
    cfg = read_config(d)
    wdir = d if weights_dir is None else Path(weights_dir)
    if not _has_weights(wdir):
        raise ModelError("missing weights (model.safetensors or pytorch_model.bin)", wdir)
    return load(d, cfg, wdir, dtype, max_length)


def _tokenizer_files(d: Path) -> dict[str, bytes]:
    from .tokenizers import tokenizer_file_bytes

    return tokenizer_file_bytes(d)


def load_metagene(d: Path, cfg: dict, wdir: Path, dtype: str, max_length: int | None
                   ) -> Backbone:
    from transformers import LlamaModel

    from .tokenizers import hf_collator

    if cfg.get("model_type") != "llama":
        raise ModelError(f"metagene needs a llama config, found model_type "
                         f"{cfg.get('model_type')!r}", d / "config.json")
    collator = hf_collator(d, max_length or int(cfg.get("max_position_embeddings", 512)))
    module = _load_hf(_weights_view(d, wdir), LlamaModel, dtype)
    return Backbone(module, int(cfg["hidden_size"]), cfg, collator, _tokenizer_files(d))


def load_auto(d: Path, cfg: dict, wdir: Path, dtype: str, max_length: int | None) -> Backbone:
    from transformers import AutoModel

    from .tokenizers import hf_collator

    limit = max_length or cfg.get("max_position_embeddings") or cfg.get("n_positions")
    offset_types = ("roberta", "xlm-roberta", "esm", "camembert")
    if not max_length and isinstance(limit, int) and cfg.get("model_type") in offset_types:
        limit = limit - 2  # these number positions from padding_idx + 1
    collator = hf_collator(d, limit if isinstance(limit, int) else None, allow_auto=True)
    module = _load_hf(_weights_view(d, wdir), AutoModel, dtype)
    hidden = cfg.get("hidden_size") or cfg.get("d_model") or cfg.get("n_embd")
    if hidden is None:
        hidden = module.model.get_input_embeddings().weight.shape[1]
    return Backbone(module, int(hidden), cfg, collator, _tokenizer_files(d))


def load_dnabert(d: Path, cfg: dict, wdir: Path, dtype: str, max_length: int | None
                  ) -> Backbone:
    from transformers import BertModel

    from .tokenizers import KmerCollator, read_vocab

    vocab = read_vocab(d / "vocab.txt")
    k = kmer_size_of_vocab(len(vocab))
    if k is None or len(vocab) != int(cfg.get("vocab_size", -1)):
        raise ModelError(f"vocab.txt has {len(vocab)} tokens; a DNABERT k-mer model needs "
                         f"4^k+5 (k=3..6) matching config vocab_size {cfg.get('vocab_size')}",
                         d / "vocab.txt")
    collator = KmerCollator(vocab, k, max_length or int(cfg.get("max_position_embeddings", 512)))
    module = _load_hf(_weights_view(d, wdir), BertModel, dtype, add_pooling_layer=False)
    return Backbone(module, int(cfg["hidden_size"]), cfg, collator, _tokenizer_files(d))


def load_dnabert2(d: Path, cfg: dict, wdir: Path, dtype: str, max_length: int | None
                   ) -> Backbone:
    from . import dnabert2
    from .tokenizers import hf_collator

    # Widths in multiples of 8 keep the padded path's matmuls on tensor-core tile sizes.
    collator = hf_collator(d, max_length or int(cfg.get("max_position_embeddings", 512)),
                           pad_multiple=8)
    module = dnabert2.load_model(cfg, load_state_dict_file(wdir), dtype=torch_dtype(dtype),
                                 path=wdir)
    return Backbone(module, int(cfg["hidden_size"]), cfg, collator, _tokenizer_files(d))


def load_kmer_cnn(d: Path, cfg: dict, wdir: Path, dtype: str, max_length: int | None
                   ) -> Backbone:
    from .kmer_cnn import KmerCnn, check_config
    from .tokenizers import BaseCollator

    check_config(cfg, d / "config.json")
    module = KmerCnn(cfg)
    state = load_state_dict_file(wdir)
    try:
        module.load_state_dict(state, strict=True)
    except RuntimeError as exc:
        raise ModelError(f"weights do not fit the k-mer CNN config: {exc}", wdir) from None
    module.to(torch_dtype(dtype))
    collator = BaseCollator(max_length or cfg.get("max_length"))
    return Backbone(module, int(cfg["hidden_size"]), cfg, collator, {})


def _weights_view(d: Path, wdir: Path) -> Path:
    """transformers reads config and weights from one directory; they may live apart."""
    if d == wdir:
        return d
    if (wdir / "config.json").is_file():
        return wdir
    raise ModelError("base model directory lacks config.json", wdir)


def required_files(arch: str) -> tuple[str, ...]:
    """Tokenizer files each family needs beside config.json and the weights."""
    return family(arch).tokenizer_files
