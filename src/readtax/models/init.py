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
from .families import ARCHS, FAMILIES, SIZES, family
from .tokenizers import dnabert_vocab, packaged_tokenizer_dir

# Every family has a stand-in.
INIT_ARCHS = ARCHS

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
    if arch not in FAMILIES:
        raise UsageError(f"unknown arch {arch!r} (choose from {', '.join(INIT_ARCHS)})")
    if size not in SIZES:
        raise UsageError(f"unknown size {size!r} (choose from {', '.join(SIZES)})")
    if arch == "dnabert" and not 3 <= k <= 6:
        raise UsageError(f"DNABERT k must be 3..6, got {k}")
    if size not in FAMILIES[arch].sizes:
        if size == "base":
            having = " and ".join(f.name for f in FAMILIES.values() if "base" in f.sizes)
            raise UsageError(f"size base exists for {having} only (its default recipe); use "
                             "tiny or full")
        raise UsageError(FAMILIES[arch].size_refusal)


def model_config(arch: str, size: str = "tiny", *, k: int = 6) -> dict:
    """The config.json content of a stand-in (no weights built)."""
    _check(arch, size, k)
    return family(arch).config_function()(size, k)


def metagene_config(size: str, k: int) -> dict:
    """METAGENE-1's config (Llama-2-7B shape, BPE vocab 1024, 512 positions)."""
    full = size == "full"
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


def dnabert2_config(size: str, k: int) -> dict:
    """DNABERT-2's published config (tiny: BERT-tiny dimensions)."""
    from .dnabert2 import REAL_CONFIG

    cfg = dict(REAL_CONFIG)
    cfg["_name_or_path"] = f"readtax-init-model/dnabert2-{size}"
    if size != "full":
        cfg.update(_BERT_TINY)
    return cfg


def dnabert_config(size: str, k: int) -> dict:
    """A DNABERT k-mer BERT (vocabulary 4^k + 5 special tokens)."""
    return {
        "architectures": ["BertForMaskedLM"], "model_type": "bert",
        "vocab_size": 4**k + 5, "max_position_embeddings": 512, "type_vocab_size": 2,
        **(_BERT_FULL if size == "full" else _BERT_TINY),
        "hidden_act": "gelu", "hidden_dropout_prob": 0.1,
        "attention_probs_dropout_prob": 0.1, "initializer_range": 0.02,
        "layer_norm_eps": 1e-12, "pad_token_id": 0,
    }


def kmer_cnn_config(size: str, k: int) -> dict:
    from .kmer_cnn import make_config

    return make_config(size)


def auto_config(size: str, k: int) -> dict:
    """A tiny DistilBERT over DNABERT-2's BPE tokens (any transformers model type works)."""
    return {
        "architectures": ["DistilBertModel"], "model_type": "distilbert",
        "vocab_size": 4096, "max_position_embeddings": 512, "dim": 64, "hidden_dim": 128,
        "n_layers": 2, "n_heads": 4, "dropout": 0.1, "attention_dropout": 0.1,
        "activation": "gelu", "initializer_range": 0.02, "pad_token_id": 3,
        "sinusoidal_pos_embds": False,
    }


def _hf_classes(arch: str) -> tuple[type, type]:
    """The transformers (config, model) classes of a stand-in of a transformers family."""
    import transformers

    names = family(arch).transformers_classes
    assert names is not None, arch
    return getattr(transformers, names[0]), getattr(transformers, names[1])


def _hf_config(arch: str, cfg: dict):
    cls = _hf_classes(arch)[0]
    return cls(**{k: v for k, v in cfg.items() if k not in ("model_type", "dtype")})


def _build(arch: str, cfg: dict):
    """The module whose parameters a checkpoint of this family holds."""
    if arch == "kmer-cnn":
        from .kmer_cnn import KmerCnn

        return KmerCnn(cfg)
    if arch == "dnabert2":
        from .dnabert2 import DnaBert2Model

        return DnaBert2Model(cfg)
    return _hf_classes(arch)[1](_hf_config(arch, cfg))


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
    """``init-model`` without ``--size``."""
    return family(arch).default_size


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

    from .classifier import save_safetensors

    if arch == "kmer-cnn":
        model = _build(arch, cfg)
        _write_json(cfg, out / "config.json")
        save_safetensors(model.state_dict(), out / "model.safetensors")
    elif arch == "dnabert2":
        from .dnabert2 import init_weights, mlm_head_state, official_state_dict

        model = _build(arch, cfg)
        init_weights(model, cfg["initializer_range"])
        gen = torch.Generator().manual_seed(seed)
        state = {**official_state_dict(model.state_dict()), **mlm_head_state(cfg, gen)}
        _write_json(cfg, out / "config.json")
        save_safetensors(dict(sorted(state.items())), out / "model.safetensors")
    else:
        from .registry import quiet_transformers

        hf_cfg = _hf_config(arch, cfg)
        cls = _hf_classes(arch)[1]
        dtype = torch.bfloat16 if cfg.get("dtype") == "bfloat16" else torch.float32
        with quiet_transformers():
            model = cls._from_config(hf_cfg, dtype=dtype)
            model.save_pretrained(str(out))
    _write_tokenizer(arch, out, k)


def _write_tokenizer(arch: str, out: Path, k: int) -> None:
    """The tokenizer files of a stand-in: a packaged tokenizer, or a DNABERT k-mer vocabulary."""
    fam = family(arch)
    if fam.standin_tokenizer is not None:
        _copy_tokenizer(fam.standin_tokenizer, out)
        return
    if "vocab.txt" not in fam.tokenizer_files:
        return  # the family tokenizes without files
    vocab = dnabert_vocab(k)
    (out / "vocab.txt").write_text("\n".join(vocab) + "\n", encoding="utf-8")
    _write_json({"tokenizer_class": "BertTokenizer", "do_lower_case": False,
                 "model_max_length": 512, "unk_token": "[UNK]", "sep_token": "[SEP]",
                 "pad_token": "[PAD]", "cls_token": "[CLS]", "mask_token": "[MASK]"},
                out / "tokenizer_config.json")
    _write_json({"unk_token": "[UNK]", "sep_token": "[SEP]", "pad_token": "[PAD]",
                 "cls_token": "[CLS]", "mask_token": "[MASK]"},
                out / "special_tokens_map.json")
