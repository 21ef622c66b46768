"""readtax.progress: a live bar on a terminal, plain lines every READTAX_PROGRESS_INTERVAL
seconds elsewhere, nothing under --quiet, in every verb."""

from __future__ import annotations

import io
import logging

import numpy as np
import pytest

from conftest import random_reads, write_fasta, write_mapping
from readtax import progress as progress_mod
from readtax.errors import UsageError
from readtax.progress import Progress


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


class Tty(io.StringIO):
    def isatty(self) -> bool:
        return True


@pytest.fixture
def clock(monkeypatch):
    c = Clock()
    monkeypatch.setattr(progress_mod.time, "monotonic", c)
    return c


@pytest.fixture
def info_logging():
    log = logging.getLogger("readtax")
    before = log.level
    log.setLevel(logging.INFO)
    yield
    log.setLevel(before)


def test_plain_lines_every_interval_off_a_terminal(clock, monkeypatch, info_logging):
    monkeypatch.setenv("READTAX_PROGRESS_INTERVAL", "10")
    out = io.StringIO()
    bar = Progress(1000, "pack x: reading", unit="reads", stream=out)
    assert bar.mode == "lines"
    for t, done in ((5, 100), (10, 200), (15, 300), (21, 500)):
        clock.now = 1000.0 + t
        bar.update(done)
    bar.close()
    assert out.getvalue().splitlines() == [
        "pack x: reading  200/1,000 reads (20%)  ETA 40s  20 reads/s",
        "pack x: reading  500/1,000 reads (50%)  ETA 21s  24 reads/s",
    ]
    assert "\r" not in out.getvalue()


def test_live_bar_on_a_terminal(clock, info_logging):
    out = Tty()
    bar = Progress(2 << 20, "verify s", stream=out)
    assert bar.mode == "bar"
    clock.now += 1
    bar.update(1 << 20)
    clock.now += 0.1  # within the redraw interval: nothing drawn
    bar.update(1.5 * (1 << 20))
    bar.clear()
    clock.now += 0.1
    bar.update(2 << 20)  # redrawn at once after clear()
    bar.close()
    text = out.getvalue()
    assert text.count("\r") == 4 and text.endswith("\n")
    assert "verify s  1.0 MB / 2.0 MB (50%)  ETA 1s  1.0 MB/s\033[K" in text


def test_quiet_logger_disabled_and_forced(clock, monkeypatch):
    log = logging.getLogger("readtax")
    before = log.level
    try:
        log.setLevel(logging.WARNING)  # what --quiet sets
        assert Progress(10, stream=Tty()).mode == "off"
        assert Progress(10, stream=Tty(), enabled=True).mode == "bar"
        log.setLevel(logging.INFO)
        assert Progress(10, stream=Tty(), enabled=False).mode == "off"
        assert Progress(10, stream=io.StringIO()).mode == "lines"
        monkeypatch.setenv("READTAX_PROGRESS_INTERVAL", "soon")
        with pytest.raises(UsageError, match="READTAX_PROGRESS_INTERVAL='soon'"):
            Progress(10, stream=io.StringIO())
    finally:
        log.setLevel(before)


@pytest.fixture
def data(tmp_path):
    heads, seqs, _ = random_reads(300, n_classes=3, seed=2)
    fa = write_fasta(tmp_path / "r.fa", heads, seqs)
    mapping = write_mapping(tmp_path / "m.tsv", 3)
    from readtax.labels import load_mapping
    from readtax.models import build_classifier, init_model, save_classifier

    backbone = init_model("kmer-cnn", "tiny", tmp_path / "init", seed=0)
    save_classifier(build_classifier(backbone, load_mapping(mapping), seed=0),
                    tmp_path / "run" / "model")
    return fa, mapping, tmp_path / "run"


def _verbs(tmp_path, fa, mapping, run_dir, tag):
    st = tmp_path / f"st{tag}"
    return [
        ("stats", fa, "--mapping", mapping),
        ("subset", fa, "-o", tmp_path / f"s{tag}.fa", "--per-species", 5, "--mapping", mapping),
        ("pack", fa, "-o", st, "--mapping", mapping),
        ("verify", st),
        ("unpack", st, "-o", tmp_path / f"u{tag}.fa"),
        ("evaluate", run_dir, "--data", fa, "-o", tmp_path / f"e{tag}"),
        ("predict", run_dir, fa, "-o", tmp_path / f"p{tag}.tsv", "--num-workers", 0,
         "--batch-size", 32),
    ]


def test_every_verb_prints_progress_lines_unless_quiet(tmp_path, run, data, monkeypatch):
    fa, mapping, run_dir = data
    monkeypatch.setenv("READTAX_PROGRESS_INTERVAL", "1e-9")  # a line at every update
    for verb in _verbs(tmp_path, fa, mapping, run_dir, "a"):
        r = run(*verb)
        assert r.code == 0, (verb[0], r.err)
        lines = [ln for ln in r.err.splitlines() if "/s" in ln]
        assert lines, (verb[0], r.err)
        assert "\r" not in r.err  # stderr is not a terminal: plain lines, no bar
    for verb in _verbs(tmp_path, fa, mapping, run_dir, "q"):
        r = run(verb[0], "--quiet", *verb[1:])
        assert r.code == 0, (verb[0], r.err)
        assert r.err == "", (verb[0], r.err)
    assert np.loadtxt(tmp_path / "pq.tsv", dtype=str, skiprows=1).shape[0] == 300
