"""The model-family registry: every list of families and every family default derives from it."""

from __future__ import annotations

import argparse
import subprocess
import sys
from dataclasses import fields

import pytest

from readtax.cli import build_parser
from readtax.config import ModelConfig
from readtax.errors import ModelError
from readtax.models.families import (
    ARCHS,
    CONFIG_DTYPES,
    FAMILIES,
    LORA_DEFAULTS,
    POOLINGS,
    SIZES,
    WEIGHT_DTYPES,
    default_batch_size,
    default_lr,
    family,
)


def _choices(verb: str, dest: str) -> tuple[str, ...]:
    parser = build_parser()
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    action = next(a for a in sub.choices[verb]._actions if a.dest == dest)
    return tuple(action.choices)


def _config_choices(name: str) -> tuple[str, ...]:
    return tuple(next(f for f in fields(ModelConfig) if f.name == name).metadata["choices"])


def test_family_lists_all_equal_the_registry():
    from readtax.models import init, registry

    assert ARCHS == tuple(FAMILIES) == ("metagene", "dnabert2", "dnabert", "kmer-cnn", "auto")
    assert _choices("init-model", "arch") == ARCHS
    assert _choices("init-model", "size") == SIZES
    assert _config_choices("arch") == ARCHS
    assert init.INIT_ARCHS == ARCHS
    assert registry.ARCHS == ARCHS
    assert set(LORA_DEFAULTS) == set(ARCHS)


def test_pooling_and_dtype_choices_agree():
    from readtax.models import classifier

    assert _config_choices("pooling") == POOLINGS
    assert _config_choices("dtype") == CONFIG_DTYPES == ("auto", *WEIGHT_DTYPES)
    for pooling in POOLINGS:
        classifier.ModelOptions(pooling=pooling)
    for dtype in WEIGHT_DTYPES:
        classifier.ModelOptions(dtype=dtype)
    with pytest.raises(Exception, match="dtype 'auto' is not one of float32, bfloat16, float16"):
        classifier.ModelOptions(dtype="auto")  # the run resolves auto before building


def test_every_family_names_functions_that_exist():
    for f in FAMILIES.values():
        assert callable(f.load_function()), f.name
        assert callable(f.config_function()), f.name
        assert f.default_size in f.sizes and set(f.sizes) <= set(SIZES)
        assert (f.size_refusal == "") == (set(f.sizes) | {"base"} >= set(SIZES)), f.name


@pytest.mark.parametrize("arch", ARCHS)
@pytest.mark.parametrize("lora", [False, True])
def test_training_defaults(arch, lora):
    expected_lr = {"metagene": 1e-4 if lora else 1e-5, "kmer-cnn": 2e-2, "dnabert2": 3e-5}
    assert default_lr(arch, lora) == expected_lr.get(arch, 5e-5)
    assert default_batch_size(arch) == (512 if arch == "kmer-cnn" else 64)


def test_unknown_family_is_named():
    with pytest.raises(ModelError, match="unknown model family 'bert9' \\(choose from metagene, "):
        family("bert9")


def test_config_help_states_the_registry_defaults():
    from readtax.config import describe

    text = describe()
    assert "kmer-cnn 512, others 64" in text
    assert "metagene 1e-4 with LoRA / 1e-5 without, dnabert2 3e-5, dnabert and auto 5e-5, " \
           "kmer-cnn 2e-2" in text


def test_registry_imports_no_torch():
    code = ("import sys, readtax.config, readtax.cli.init_model, readtax.models.families; "
            "assert 'torch' not in sys.modules, 'torch imported'")
    subprocess.run([sys.executable, "-c", code], check=True)
