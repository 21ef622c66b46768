"""The model families readtax knows: one record per family, the single place for per-family facts.

Everything that offers or checks a family derives from :data:`FAMILIES`: the configuration's
``model.arch`` choices, ``init-model --arch``, the loaders in :mod:`.registry`, the stand-in
configs in :mod:`.init`, and the training defaults (:func:`default_lr`,
:func:`default_batch_size`). Pooling and weight-dtype choices are shared by every family and live
here too, so the configuration and the classifier cannot offer different ones.

This module imports nothing heavy: the configuration and the CLI parsers read it at start-up.
Loaders and config builders are named, not imported, and resolved on use.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass

from ..errors import ModelError

# How token states become one read vector (mean over real tokens, first token, max).
POOLINGS = ("mean", "cls", "max")
# Backbone weight dtypes a classifier can be built with (the head stays float32).
WEIGHT_DTYPES = ("float32", "bfloat16", "float16")
# What the configuration accepts: a weight dtype, or auto (the run picks one for the device).
CONFIG_DTYPES = ("auto", *WEIGHT_DTYPES)
# Stand-in sizes of ``init-model``, over all families.
SIZES = ("tiny", "base", "full")


@dataclass(frozen=True)
class Family:
    """Everything readtax needs to know about one model family."""

    name: str
    summary: str  # one line: the backbone and its tokens
    loader: str  # function in readtax.models.registry: (dir, cfg, weights dir, dtype, max_len)
    init_config: str  # function in readtax.models.init: (size, k) -> config.json content
    lr: float  # default peak learning rate (full fine-tuning or a frozen backbone)
    lr_lora: float | None = None  # default peak learning rate with LoRA (None: lr)
    batch_size: int = 64  # default reads per batch per process
    lora: bool = False  # LoRA adapters by default
    lora_targets: tuple[str, ...] | None = None  # module-name suffixes that get adapters
    tokenizer_files: tuple[str, ...] = ()  # needed beside config.json and the weights
    sizes: tuple[str, ...] = ("tiny", "full")  # init-model sizes this family has
    default_size: str = "tiny"  # init-model without --size
    size_refusal: str = ""  # why a size other than base is refused ("" when none is)
    # transformers (config, model) classes of its checkpoints; None: the backbone is our own
    # module. A stand-in is built from them, and a classifier saves such a backbone with
    # transformers' save_pretrained.
    transformers_classes: tuple[str, str] | None = None
    standin_tokenizer: str | None = None  # packaged tokenizer a stand-in gets (.tokenizers)

    def load_function(self) -> Callable:
        return _resolve("registry", self.loader)

    def config_function(self) -> Callable:
        return _resolve("init", self.init_config)


FAMILIES: dict[str, Family] = {f.name: f for f in (
    Family("metagene", "transformers LlamaModel; METAGENE-1 BPE (tokenizer.json)",
           "load_metagene", "metagene_config", tokenizer_files=("tokenizer.json",),
           # METAGENE-1 paper: LoRA r=8, alpha=16 on q/k/v/o at 1e-4.
           lr=1e-5, lr_lora=1e-4, lora=True, lora_targets=("q_proj", "k_proj", "v_proj", "o_proj"),
           transformers_classes=("LlamaConfig", "LlamaForCausalLM"),
           standin_tokenizer="metagene-1"),
    Family("dnabert2", "DnaBert2Model (ours); DNABERT-2 BPE (tokenizer.json)",
           "load_dnabert2", "dnabert2_config", lr=3e-5, tokenizer_files=("tokenizer.json",),
           lora_targets=("Wqkv", "attention.output.dense"), standin_tokenizer="dnabert-2"),
    Family("dnabert", "transformers BertModel; overlapping k-mers (vocab.txt)",
           "load_dnabert", "dnabert_config", lr=5e-5, tokenizer_files=("vocab.txt",),
           lora_targets=("query", "key", "value", "attention.output.dense"),
           transformers_classes=("BertConfig", "BertForMaskedLM")),
    # The k-mer model's per-read cost is tiny and its hashed table learns from more reads per
    # step (benchmarks/real_genomes.py); base is the recipe that trains well on real reads.
    Family("kmer-cnn", "KmerCnn (ours); one code per base", "load_kmer_cnn", "kmer_cnn_config",
           lr=2e-2, batch_size=512, sizes=("tiny", "base", "full"), default_size="base"),
    # The stand-in is a tiny DistilBERT over DNABERT-2's BPE tokens.
    Family("auto", "any local transformers AutoModel; its fast tokenizer", "load_auto",
           "auto_config", lr=5e-5, sizes=("tiny",),
           size_refusal="the generic (auto) stand-in exists in size tiny only; use a real "
                        "checkpoint directory for anything larger",
           transformers_classes=("DistilBertConfig", "DistilBertModel"),
           standin_tokenizer="dnabert-2"),
)}

ARCHS: tuple[str, ...] = tuple(FAMILIES)

# Default LoRA use and target modules per family, as (on, targets).
LORA_DEFAULTS: dict[str, tuple[bool, tuple[str, ...] | None]] = {
    f.name: (f.lora, f.lora_targets) for f in FAMILIES.values()}


def family(arch: str) -> Family:
    """The record of ``arch``; an unknown name is a :class:`~readtax.errors.ModelError`."""
    try:
        return FAMILIES[arch]
    except KeyError:
        raise ModelError(f"unknown model family {arch!r} (choose from {', '.join(ARCHS)})"
                         ) from None


def default_lr(arch: str, lora: bool) -> float:
    """Peak learning rate for a family when none is configured (see configs/)."""
    f = family(arch)
    return f.lr_lora if lora and f.lr_lora is not None else f.lr


def default_batch_size(arch: str) -> int:
    """Reads per batch per process for a family when none is configured."""
    return family(arch).batch_size


def _resolve(module: str, name: str) -> Callable:
    return getattr(importlib.import_module(f"{__package__}.{module}"), name)
