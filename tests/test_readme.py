"""README examples run as written: the "plain transformers" loading code gives readtax's calls."""

from __future__ import annotations

import contextlib
import io
import re
from pathlib import Path

import numpy as np
import pytest

README = Path(__file__).resolve().parents[1] / "README.md"
SECTION = "### Loading a readtax model from plain transformers"
MODEL_LINE = 'model_dir = "runs/metagene1/model"'


def _example() -> str:
    text = README.read_text(encoding="utf-8")
    assert SECTION in text
    blocks = re.findall(r"```python\n(.*?)```", text.split(SECTION, 1)[1], flags=re.S)
    assert blocks, "no python code block after the section heading"
    code = blocks[0]
    assert code.count(MODEL_LINE) == 1
    return code


@pytest.mark.parametrize("lora", [True, False])
def test_plain_transformers_example_matches_readtax(tmp_path, lora):
    from readtax.labels import LabelMap
    from readtax.models import ModelOptions, build_classifier, init_model, save_classifier
    from readtax.predict import classify_sequences

    lm = LabelMap(np.arange(4), ["Species one", "Species_two", "three", "four"],
                  100 + np.arange(4))
    backbone = init_model("metagene", "tiny", tmp_path / "init", seed=0)
    model = build_classifier(backbone, lm, options=ModelOptions(lora=lora), seed=1)
    if lora:  # non-zero adapters, so that leaving them out would change the calls
        import torch

        with torch.no_grad():
            for name, p in model.backbone.named_parameters():
                if "lora_B" in name:
                    p.normal_(0, 0.5, generator=torch.Generator().manual_seed(len(name)))
    save_classifier(model, tmp_path / "model")
    assert (tmp_path / "model" / "adapter").is_dir() == lora

    code = _example().replace(MODEL_LINE, f"model_dir = {str(tmp_path / 'model')!r}")
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        exec(compile(code, "README.md", "exec"), {"__name__": "readme_example"})
    printed = [ln.rsplit(" ", 1) for ln in out.getvalue().splitlines()]
    reads = ["ACGTTGCAAGGCTTACGGATCCATGCAAGT", "ttgacctgaagcgtacgatcgatcgatcgt"]
    calls = classify_sequences(tmp_path / "model", reads)
    assert [p[0] for p in printed] == [f"{r[:12]} {n}" for r, n in
                                       zip(reads, calls.label_names(lm))]
    np.testing.assert_allclose([float(p[1]) for p in printed], calls.confidence, atol=2e-4)


@pytest.mark.parametrize("doc", ["README.md", "docs/architecture.md", "docs/benchmarks.md",
                                 "docs/streaming.md"])
def test_relative_links_point_to_files(doc):
    """Links between README, docs/ and benchmarks/ resolve (a moved file breaks a test)."""
    path = README.parent / doc
    links = re.findall(r"\]\(([^)#\s]+)(?:#[^)]*)?\)", path.read_text(encoding="utf-8"))
    local = [link for link in links if "://" not in link]
    missing = [link for link in local if not (path.parent / link).exists()]
    assert not missing, f"{doc}: {missing}"
    if doc == "README.md":
        assert "docs/architecture.md" in local and "docs/benchmarks.md" in local


def test_architecture_names_every_module():
    """docs/architecture.md and the package tree agree: every module and subpackage of
    src/readtax is named on the page, and every module the page names exists."""
    pkg = README.parent / "src" / "readtax"
    text = (README.parent / "docs" / "architecture.md").read_text(encoding="utf-8")
    top = {p.name for p in pkg.glob("*.py") if p.stem not in ("__init__", "__main__")}
    subpkgs = {p.name for p in pkg.iterdir() if (p / "__init__.py").exists() and p.name != "cli"}
    inner = {p.stem for d in subpkgs for p in (pkg / d).glob("*.py") if p.stem != "__init__"}
    unnamed = sorted([m for m in top if m not in text]
                     + [f"{d}/" for d in subpkgs if f"{d}/" not in text]
                     + [m for m in inner if f"`{m}`" not in text and f"{m}.py" not in text])
    assert not unnamed, f"docs/architecture.md does not name: {unnamed}"
    named = set(re.findall(r"\b([a-z_0-9]+\.py)\b", text))
    exists = top | {p.name for p in pkg.rglob("*.py")} | {p.name for p in README.parent.glob("*/*.py")}
    assert not named - exists, f"docs/architecture.md names missing modules: {named - exists}"
