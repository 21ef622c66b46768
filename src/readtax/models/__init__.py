"""Model families and the read classifier built on them.

:mod:`.families` records the families; :mod:`.registry` loads them; :mod:`.classifier` builds
the classifier around a backbone; :mod:`.init` writes random-weight stand-ins. The names below
are loaded on first use: :mod:`.families` stays importable without torch (configuration and CLI
parsers read it), while the classifier brings torch and transformers.
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {
    "ARCHS": "families",
    "LORA_DEFAULTS": "families",
    "ClassifierOutput": "classifier",
    "ModelOptions": "classifier",
    "ReadClassifier": "classifier",
    "activation_bytes": "classifier",
    "build_classifier": "classifier",
    "count_parameters": "init",
    "detect_arch": "registry",
    "enable_gradient_checkpointing": "classifier",
    "init_model": "init",
    "load_classifier": "classifier",
    "load_trainable_state_dict": "classifier",
    "merge_lora": "classifier",
    "model_config": "init",
    "resolve_model_dir": "registry",
    "save_classifier": "classifier",
    "trainable_state_dict": "classifier",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f"{__name__}.{module}"), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_EXPORTS))
