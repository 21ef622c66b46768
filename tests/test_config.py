"""Configuration: defaults, YAML + overrides, validation listing every problem, round trip."""

from __future__ import annotations

import typing
from dataclasses import MISSING, Field, fields, is_dataclass
from pathlib import Path

import pytest

from readtax.config import (
    SECTIONS,
    ConfigError,
    RunConfig,
    describe,
    dump_config,
    load_config,
    parse_overrides,
    save_steps_of,
)
from readtax.errors import UsageError

CONFIGS = sorted((Path(__file__).resolve().parents[1] / "configs").glob("*.yaml"))


def test_defaults_are_valid_templates():
    cfg = load_config(require_paths=False)
    assert cfg == RunConfig()
    assert cfg.train.schedule == "cosine" and cfg.train.load_best_at_end


def test_yaml_then_overrides(tmp_path):
    p = tmp_path / "c.yaml"
    p.write_text("seed: 3\ntrain:\n  lr: 1.0e-3\n  batch_size: 32\nmodel:\n  lora: true\n"
                 "data:\n  train: [a.fa]\n  val: v.fa\n")
    cfg = load_config(p, ["train.lr=3e-4", "train.schedule=linear", "model.path=m",
                          "output=run", ("train.max_steps", 10)])
    assert cfg.seed == 3
    assert cfg.train.lr == pytest.approx(3e-4)  # "3e-4" is a string to YAML: converted here
    assert cfg.train.batch_size == 32 and cfg.train.max_steps == 10
    assert cfg.model.lora is True and cfg.data.val == ["v.fa"]
    assert cfg.train.schedule == "linear"


def test_value_conversion():
    cfg = load_config(overrides=["model.lora=no", "model.lora_targets=q_proj,v_proj",
                                 "data.val_per_class=null", "train.max_steps=1_000",
                                 "train.warmup_steps=1e2"], require_paths=False)
    assert cfg.model.lora is False
    assert cfg.model.lora_targets == ["q_proj", "v_proj"]
    assert cfg.data.val_per_class is None
    assert cfg.train.max_steps == 1000 and cfg.train.warmup_steps == 100


def test_every_problem_reported_at_once(tmp_path):
    p = tmp_path / "bad.yaml"
    p.write_text("train:\n  lrr: 1\n  batch_size: -4\n  schedule: stepwise\n"
                 "  save_steps: 70\n  eval_steps: 50\nmodel:\n  dropout: lots\n")
    with pytest.raises(ConfigError) as ei:
        load_config(p)
    probs = ei.value.problems
    text = str(ei.value)
    assert str(p) in text and "\n" not in text
    assert "unknown option 'train.lrr' (did you mean train.lr?)" in probs
    assert any(s.startswith("train.batch_size: -4 is below") for s in probs)
    assert any(s.startswith("train.schedule: 'stepwise' is not one of cosine") for s in probs)
    assert any(s.startswith("train.save_steps (70) must be a multiple") for s in probs)
    assert any(s.startswith("model.dropout: expected a number") for s in probs)
    for need in ("data.train", "data.val", "model.path", "output"):
        assert any(s.startswith(need + ":") for s in probs), need
    assert ei.value.exit_code == 2


def test_bad_yaml_and_bad_override(tmp_path):
    p = tmp_path / "broken.yaml"
    p.write_text("train: [unclosed\n")
    with pytest.raises(UsageError) as ei:
        load_config(p)
    assert "not valid YAML" in str(ei.value) and "line" in str(ei.value)
    with pytest.raises(ConfigError, match="not key=value"):
        parse_overrides(["train.lr"])
    with pytest.raises(ConfigError, match="expected a mapping"):
        load_config(overrides=[("train", 5)], require_paths=False)


def test_round_trip(tmp_path):
    cfg = load_config(overrides=["data.train=a.fa,b.fa", "data.val=v.fa", "model.path=m",
                                 "output=r", "model.lora_targets=q,k", "train.lr=2.5e-5",
                                 "data.balance_temperature=0.5", "train.max_steps=7"])
    path = tmp_path / "config.yaml"
    dump_config(cfg, path, header="saved by a test")
    assert path.read_text().startswith("# saved by a test\n")
    assert load_config(path) == cfg


def _options(cls: type, prefix: str = "") -> list[tuple[str, Field]]:
    """Every leaf option under ``cls``, walking nested config dataclasses by their types."""
    hints = typing.get_type_hints(cls)
    out = []
    for f in fields(cls):
        if is_dataclass(hints[f.name]):
            out += _options(hints[f.name], f"{prefix}{f.name}.")
        else:
            out.append((prefix + f.name, f))
    return out


def _config_classes(cls: type = RunConfig) -> set[type]:
    hints = typing.get_type_hints(cls)
    nested = {hints[f.name] for f in fields(cls) if is_dataclass(hints[f.name])}
    return {cls}.union(*(_config_classes(c) for c in nested))


def test_describe_lists_every_option(capsys):
    # Walks the dataclasses themselves (not the key list that describe() uses), and reads what
    # the command line prints, so an option missing anywhere on the way is caught.
    from readtax import config as config_mod
    from readtax.cli import main

    assert main(["train", "--config-help"]) == 0
    text = capsys.readouterr().out
    assert text == describe()
    defined = {v for v in vars(config_mod).values()
               if isinstance(v, type) and is_dataclass(v) and v.__module__ == config_mod.__name__}
    assert _config_classes() == defined  # every config dataclass is reachable from RunConfig
    expected = _options(RunConfig)
    assert {key.split(".")[0] for key, _ in expected if "." in key} == set(SECTIONS)
    assert len(expected) == sum(len(fields(c)) for c in defined) - len(SECTIONS)
    entries = text.split("\n")
    for key, f in expected:
        default = f.default_factory() if f.default is MISSING else f.default
        head = f"{key} (default {default!r})"
        if "choices" in f.metadata:
            head += f" [{', '.join(f.metadata['choices'])}]"
        assert f.metadata.get("help"), f"{key} has no help text"
        assert entries.count(head) == 1, head
        assert entries[entries.index(head) + 1] == f"    {f.metadata['help']}", key
    assert text.count(" (default ") == len(expected)


@pytest.mark.parametrize("path", CONFIGS, ids=[p.name for p in CONFIGS])
def test_shipped_configs_validate(path):
    cfg = load_config(path, require_paths=False)
    # The shipped configs are templates: data, model and output come from the command line.
    full = load_config(path, ["data.train=t", "data.val=v", "model.path=m", "output=o"])
    assert full.train == cfg.train
    text = path.read_text()
    assert "GPU memory" in text and "reads/s" in text


def test_shipped_configs_exist():
    assert {p.name for p in CONFIGS} >= {"metagene1-lora.yaml", "dnabert2.yaml",
                                        "dnabert6.yaml", "kmer-cnn.yaml"}


def test_save_steps_follows_eval_steps():
    cfg = load_config(overrides=["train.eval_steps=60"], require_paths=False)
    assert cfg.train.save_steps is None and save_steps_of(cfg.train) == 60
    cfg = load_config(overrides=["train.eval_steps=60", "train.save_steps=120"],
                      require_paths=False)
    assert save_steps_of(cfg.train) == 120
    with pytest.raises(ConfigError, match=r"train.save_steps \('90'\) must be a multiple of "
                                          r"train.eval_steps \('60'\)"):
        load_config(overrides=["train.eval_steps=60", "train.save_steps=90"], require_paths=False)


def test_list_syntax_and_values_quoted_as_given():
    cfg = load_config(overrides=["model.lora_targets=[q_proj, 'v_proj']", "data.val=[a.fa,b.fa]",
                                 "data.train=[]"], require_paths=False)
    assert cfg.model.lora_targets == ["q_proj", "v_proj"]
    assert cfg.data.val == ["a.fa", "b.fa"] and cfg.data.train == []
    assert load_config(overrides=["model.lora_targets=q,k"],
                       require_paths=False).model.lora_targets == ["q", "k"]
    with pytest.raises(ConfigError) as ei:
        load_config(overrides=["model.lora_targets=[q_proj", "train.batch_size=-1e1",
                               "train.schedule= Cosine", "train.warmup_ratio=1.5"],
                    require_paths=False)
    probs = ei.value.problems
    assert "model.lora_targets: expected a list such as [a, b], got '[q_proj'" in probs
    assert "train.batch_size: '-1e1' is below the minimum 1" in probs
    assert "train.schedule: ' Cosine' is not one of cosine, linear, constant" in probs
    assert "train.warmup_ratio: '1.5' is above the maximum 1.0" in probs


def test_lora_without_targets_names_the_family_with_the_right_article(tmp_path):
    from readtax.labels import LabelMap
    from readtax.models import ModelOptions, build_classifier

    # The family defaults are resolved before any file is read: an empty directory will do.
    lm = LabelMap.from_ids([0, 1], names=["a", "b"], tax_ids=[1, 2])
    with pytest.raises(UsageError, match="^LoRA on an auto model needs lora_targets"):
        build_classifier(tmp_path, lm, arch="auto", options=ModelOptions(lora=True))
