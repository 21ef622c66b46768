"""Model families and the read classifier built on them (see :mod:`.registry`, :mod:`.classifier`).

Importing this package imports torch and transformers; CLI modules import it inside ``run``.
"""

from .classifier import (
    ClassifierOutput,
    ModelOptions,
    ReadClassifier,
    activation_bytes,
    build_classifier,
    enable_gradient_checkpointing,
    load_classifier,
    load_trainable_state_dict,
    merge_lora,
    save_classifier,
    trainable_state_dict,
)
from .init import count_parameters, init_model, model_config
from .registry import ARCHS, LORA_DEFAULTS, detect_arch, resolve_model_dir

__all__ = [
    "ARCHS",
    "LORA_DEFAULTS",
    "ClassifierOutput",
    "ModelOptions",
    "ReadClassifier",
    "activation_bytes",
    "build_classifier",
    "count_parameters",
    "detect_arch",
    "enable_gradient_checkpointing",
    "init_model",
    "load_classifier",
    "load_trainable_state_dict",
    "merge_lora",
    "model_config",
    "resolve_model_dir",
    "save_classifier",
    "trainable_state_dict",
]
