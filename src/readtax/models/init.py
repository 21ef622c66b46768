"""Randomly initialised local stand-ins of each family (``readtax init-model``).

``tiny`` stand-ins have the real config fields, file layout and tokenizer with tiny dimensions
(what tests and the demo use); ``full`` ones have the real dimensions with random weights (for
GPU throughput checks). :func:`model_config` gives the config without building anything and
:func:`count_parameters` counts a config's parameters on the ``meta`` device (no memory).
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

from ..errors import UsageError
from .tokenizers import dnabert_vocab, packaged_tokenizer_dir

SIZES = ("tiny", "base", "full")
INIT_ARCHS = ("metagene", "dnabert2", "dnabert", "kmer-cnn", "auto")

# METAGENE-1 (Llama-2-7B shape, BPE vocab 1024, 512 positions).
_METAGENE_FULL = {
    "hidden_size": 4096, "intermediate_size": 11008, "num_hidden_layers": 32,
    "num_attention_heads": 32, "num_key_value_heads": 32,
}
_METAGENE_TINY = {
    "hidden_size": 64, "intermediate_size": 172, "num_hidden_layers": 2,
    "num_attention_heads": 4, "num_key_value_heads": 4,
}
_BERT_FULL = {"hidden_size": 768, "intermediate_size": 3072, "num_hidden_layers": 12,
              "num_attention_heads": 12}
_BERT_TINY = {"hidden_size": 64, "intermediate_size": 128, "num_hidden_layers": 2,
              "num_attention_heads": 4}


def _check(arch: str, size: str, k: int) -> None:
    if arch not in INIT_ARCHS:
        raise UsageError(f"unknown arch {arch!r} (choose from {', '.join(INIT_ARCHS)})")
    if size not in SIZES:
        raise UsageError(f"unknown size {size!r} (choose from {', '.join(SIZES)})")
    if arch == "dnabert" and not 3 <= k <= 6:
        raise UsageError(f"DNABERT k must be 3..6, got {k}")
    if size == "base" and arch != "kmer-cnn":
        raise UsageError("size base exists for kmer-cnn only (its default recipe); use tiny or "
                         "full")
    if arch == "auto" and size != "tiny":
        raise UsageError("the generic (auto) stand-in exists in size tiny only; "
                         "use a real checkpoint directory for anything larger")


def model_config(arch: str, size: str = "tiny", *, k: int = 6) -> dict:
    """The config.json content of a stand-in (no weights built)."""
    _check(arch, size, k)
    full = size == "full"
    if arch == "metagene":
        return {
            "architectures": ["LlamaForCausalLM"], "model_type": "llama",
            "vocab_size": 1024, "max_position_embeddings": 512,
            **(_METAGENE_FULL if full else _METAGENE_TINY),
            "hidden_act": "silu", "rms_norm_eps": 1e-5, "rope_theta": 10000.0,
            "initializer_range": 0.02, "attention_bias": False, "attention_dropout": 0.0,
            "mlp_bias": False, "tie_word_embeddings": False,
            "pad_token_id": 0, "bos_token_id": 3, "eos_token_id": 4,
            "dtype": "bfloat16" if full else "float32", "use_cache": True,
        }
    if arch == "dnabert2":
        from .dnabert2 import REAL_CONFIG

        cfg = dict(REAL_CONFIG)
        cfg["_name_or_path"] = f"readtax-init-model/dnabert2-{size}"
        if not full:
            cfg.update(_BERT_TINY)
        return cfg
    if arch == "dnabert":
        return {
            "architectures": ["BertForMaskedLM"], "model_type": "bert",
            "vocab_size": 4**k + 5, "max_position_embeddings": 512, "type_vocab_size": 2,
            **(_BERT_FULL if full else _BERT_TINY),
            "hidden_act": "gelu", "hidden_dropout_prob": 0.1,
            "attention_probs_dropout_prob": 0.1, "initializer_range": 0.02,
            "layer_norm_eps": 1e-12, "pad_token_id": 0,
        }
    if arch == "kmer-cnn":
        from .kmer_cnn import make_config

        return make_config(size)
    # auto: a tiny DistilBERT over DNABERT-2's BPE tokens (any transformers model type works).
    return {
        "architectures": ["DistilBertModel"], "model_type": "distilbert",
        "vocab_size": 4096, "max_position_embeddings": 512, "dim": 64, "hidden_dim": 128,
        "n_layers": 2, "n_heads": 4, "dropout": 0.1, "attention_dropout": 0.1,
        "activation": "gelu", "initializer_range": 0.02, "pad_token_id": 3,
        "sinusoidal_pos_embds": False,
    }


def _hf_config(arch: str, cfg: dict):
    from transformers import BertConfig, DistilBertConfig, LlamaConfig

    cls = {"metagene": LlamaConfig, "dnabert": BertConfig, "auto": DistilBertConfig}[arch]
    return cls(**{k: v for k, v in cfg.items() if k not in ("model_type", "dtype")})


def _build(arch: str, cfg: dict):
    """The module whose parameters a checkpoint of this family holds."""
    if arch == "kmer-cnn":
        from .kmer_cnn import KmerCnn

        return KmerCnn(cfg)
    if arch == "dnabert2":
        from .dnabert2 import DnaBert2Model

        return DnaBert2Model(cfg)
    from transformers import BertForMaskedLM, DistilBertModel, LlamaForCausalLM

    cls = {"metagene": LlamaForCausalLM, "dnabert": BertForMaskedLM,
           "auto": DistilBertModel}[arch]
    return cls(_hf_config(arch, cfg))


def count_parameters(arch: str, size: str = "full", *, k: int = 6,
                     config: dict | None = None) -> int:
    """Parameters of the model a config describes, built on the meta device (no memory)."""
    import torch

    cfg = config if config is not None else model_config(arch, size, k=k)
    with torch.device("meta"):
        model = _build(arch, cfg)
    seen: set[int] = set()
    total = 0
    for p in model.parameters():  # tied parameters count once
        if id(p) not in seen:
            seen.add(id(p))
            total += p.numel()
    return total


def _copy_tokenizer(name: str, out: Path) -> None:
    src = packaged_tokenizer_dir(name)
    for f in sorted(src.iterdir()):
        if f.suffix == ".json":
            shutil.copyfile(f, out / f.name)


def _write_json(obj: dict, path: Path) -> None:
    path.write_text(json.dumps(obj, indent=2) + "\n", encoding="utf-8")


def default_size(arch: str) -> str:
    """``init-model`` without ``--size``: kmer-cnn gets the recipe that trains well on real
    reads on a CPU (base); the other families a tiny stand-in."""
    return "base" if arch == "kmer-cnn" else "tiny"


def init_model(arch: str, size: str, out_dir: str | os.PathLike[str], *, seed: int = 0,
               k: int = 6, force: bool = False) -> Path:
    """Write a randomly initialised stand-in of ``arch`` (same seed -> same weights).

    An existing non-empty ``out_dir`` is refused unless ``force``; it is then replaced only
    once the new model is complete.
    """
    import torch

    from ..outputs import atomic_dir

    cfg = model_config(arch, size, k=k)
    out = Path(out_dir)
    if out.exists() and (not out.is_dir() or any(out.iterdir())) and not force:
        raise UsageError(f"output {out} exists and is not empty")
    with atomic_dir(out) as tmp, torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        _write_model(arch, size, cfg, tmp, seed, k)
    return out


def _write_model(arch: str, size: str, cfg: dict, out: Path, seed: int, k: int) -> None:
    import torch

    from .classifier import _save_safetensors

    full = size == "full"
    if arch == "kmer-cnn":
        model = _build(arch, cfg)
        _write_json(cfg, out / "config.json")
        _save_safetensors(model.state_dict(), out / "model.safetensors")
        return
    if arch == "dnabert2":
        from .dnabert2 import init_weights, mlm_head_state, official_state_dict

        model = _build(arch, cfg)
        init_weights(model, cfg["initializer_range"])
        gen = torch.Generator().manual_seed(seed)
        state = {**official_state_dict(model.state_dict()), **mlm_head_state(cfg, gen)}
        _write_json(cfg, out / "config.json")
        _save_safetensors(dict(sorted(state.items())), out / "model.safetensors")
        _copy_tokenizer("dnabert-2", out)
        return
    hf_cfg = _hf_config(arch, cfg)
    from transformers import BertForMaskedLM, DistilBertModel, LlamaForCausalLM

    cls = {"metagene": LlamaForCausalLM, "dnabert": BertForMaskedLM,
           "auto": DistilBertModel}[arch]
    dtype = torch.bfloat16 if full and arch == "metagene" else torch.float32
    from .registry import quiet_transformers

    with quiet_transformers():
        model = cls._from_config(hf_cfg, dtype=dtype)
        model.save_pretrained(str(out))
    if arch == "metagene":
        _copy_tokenizer("metagene-1", out)
    elif arch == "auto":
        _copy_tokenizer("dnabert-2", out)
    else:
        vocab = dnabert_vocab(k)
        (out / "vocab.txt").write_text("\n".join(vocab) + "\n", encoding="utf-8")
        _write_json({"tokenizer_class": "BertTokenizer", "do_lower_case": False,
                     "model_max_length": 512, "unk_token": "[UNK]", "sep_token": "[SEP]",
                     "pad_token": "[PAD]", "cls_token": "[CLS]", "mask_token": "[MASK]"},
                    out / "tokenizer_config.json")
        _write_json({"unk_token": "[UNK]", "sep_token": "[SEP]", "pad_token": "[PAD]",
                     "cls_token": "[CLS]", "mask_token": "[MASK]"},
                    out / "special_tokens_map.json")
