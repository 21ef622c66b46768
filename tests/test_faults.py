"""Faults: kill -9, Ctrl-C, a full disk, a store corrupted after verify, two runs in one place.

Every verb runs as a real process (``python -m readtax``) so that SIGKILL, SIGINT and a
file-size limit hit it as they would a user's run. Kills are aimed with a marker (the verb's
temporary output appearing) rather than fixed sleeps, and the checks hold whenever the signal
lands: the output is either absent (or the old one intact) or complete.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import resource
import signal
import subprocess
import sys
import time
import zlib
from pathlib import Path

import numpy as np
import pytest

from helpers_train import make_task
from readtax.errors import StoreError, UsageError
from readtax.outputs import HOST, clean_stale, output_lock, temp_name
from readtax.store import F_BASES, ReadStore, pack

torch = pytest.importorskip("torch")
pytest.importorskip("transformers")

ENV = {**os.environ, "OMP_NUM_THREADS": "1", "TOKENIZERS_PARALLELISM": "false",
       "PYTHONDONTWRITEBYTECODE": "1"}  # a file-size limit must not meet a .pyc write
N_READS = 40_000


def _cmd(args) -> list[str]:
    return [sys.executable, "-m", "readtax", *map(str, args)]


def _run(args, *, fsize: int | None = None, timeout: int = 120) -> subprocess.CompletedProcess:
    def limit():
        resource.setrlimit(resource.RLIMIT_FSIZE, (fsize, fsize))

    return subprocess.run(_cmd(args), env=ENV, capture_output=True, text=True, timeout=timeout,
                          preexec_fn=limit if fsize else None)


def _spawn(args) -> subprocess.Popen:
    return subprocess.Popen(_cmd(args), env=ENV, stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE, text=True)


def _wait_for(cond, proc: subprocess.Popen, timeout: float = 60) -> bool:
    """Poll ``cond`` until it holds (True) or ``proc`` ends first (False)."""
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if cond():
            return True
        if proc.poll() is not None:
            return False
        time.sleep(0.002)
    raise AssertionError("marker never appeared")


def _temporaries(target: Path) -> list[Path]:
    return sorted(target.parent.glob(f".{target.name}.*"))


def _digest(paths) -> dict[str, str]:
    out = {}
    for p in paths:
        p = Path(p)
        files = sorted(f for f in p.rglob("*") if f.is_file()) if p.is_dir() else [p]
        for f in files:
            out[str(f)] = hashlib.sha256(f.read_bytes()).hexdigest()
    return out


def _write_reads(path: Path, n: int, n_classes: int = 4, length: int = 150, seed: int = 0):
    rng = np.random.default_rng(seed)
    bases = np.frombuffer(b"ACGT", np.uint8)[rng.integers(0, 4, (n, length))]
    classes = rng.integers(0, n_classes, n)
    with open(path, "wb") as fh:
        for i in range(n):
            c = int(classes[i])
            fh.write(f">lbl|{10 + c}|{1000 + c}|0|sp{c}-{i}/1\n".encode())
            fh.write(bases[i].tobytes() + b"\n")
    return path


@pytest.fixture(scope="module")
def world(tmp_path_factory) -> dict[str, Path]:
    """Reads, mapping, genomes, a packed store, a tiny model and a short trained run."""
    from readtax.cli import main
    from readtax.labels import load_mapping
    from readtax.models import init_model

    d = tmp_path_factory.mktemp("faults")
    task = make_task(d / "task", n_classes=4, train_per_class=200, val_per_class=40)
    reads = _write_reads(d / "reads.fa", N_READS)
    rng = np.random.default_rng(5)
    genomes = []
    for k in range(2):
        g = d / f"g{k}.fa"
        g.write_text(f">g{k}_c0\n" + "".join(rng.choice(list("ACGT"), 40_000)) + "\n")
        genomes.append(g)
    gmap = d / "gmap.tsv"
    gmap.write_text("class_id\tlabel_name\ttax_id\n1\tg0\t101\n2\tg1\t102\n")
    store = d / "store"
    pack([str(reads)], store, mapping=load_mapping(task["mapping"]), seed=0, workers=1,
         progress=False)
    model = init_model("kmer-cnn", "tiny", d / "model", seed=0)
    run = d / "run"
    code = main(["train", "-q", "--train", str(task["train"]), "--val", str(task["val"]),
                 "--mapping", str(task["mapping"]), "--model", str(model), "-o", str(run),
                 "--num-workers", "0", "--max-steps", "2", "--batch-size", "16",
                 "--eval-steps", "2", "--save-steps", "2"])
    assert code == 0
    return {**task, "reads": reads, "genomes": genomes, "gmap": gmap, "store": store,
            "model": model, "run": run, "dir": d}


# Every long verb: (arguments, the output it makes, the inputs it must leave untouched).
def _verbs(w: dict[str, Path], out: Path) -> dict[str, tuple[list, Path, list]]:
    return {
        "pack": (["pack", w["reads"], "-o", out / "st", "--mapping", w["mapping"],
                  "--workers", "2"], out / "st", [w["reads"]]),
        "subset": (["subset", w["reads"], "-o", out / "sub.fa", "--per-species", "6000",
                    "--mapping", w["mapping"]], out / "sub.fa", [w["reads"]]),
        "unpack": (["unpack", w["store"], "-o", out / "u.fa"], out / "u.fa", [w["store"]]),
        "simulate": (["simulate", *w["genomes"], "-o", out / "sim.fa", "--mapping", w["gmap"],
                      "--reads-per-species", "20000", "--seed", "1"], out / "sim.fa",
                     w["genomes"]),
        "predict": (["predict", w["run"], w["train"], "-o", out / "p.tsv", "--num-workers",
                     "0"], out / "p.tsv", [w["train"], w["run"] / "model"]),
        "evaluate": (["evaluate", w["run"], "--data", w["store"], "-o", out / "ev",
                      "--num-workers", "0", "--max-reads", "3000"], out / "ev" / "metrics.json",
                     [w["store"], w["run"] / "model"]),
    }


def _complete(verb: str, target: Path, reference: Path) -> bool:
    """The output under its final name is the whole thing (same as an undisturbed run)."""
    if verb == "pack":
        return _run(["verify", target]).returncode == 0 and \
            (target / "manifest.json").read_bytes() == (reference / "manifest.json").read_bytes()
    if verb == "evaluate":
        a, b = json.loads(target.read_text()), json.loads(reference.read_text())
        return a["accuracy"] == b["accuracy"] and a["reads"] == b["reads"]
    return target.read_bytes() == reference.read_bytes()


def _marker(verb: str, target: Path):
    if verb == "evaluate":
        return lambda: target.parent.exists()  # the report directory, filled before metrics.json
    return lambda: bool(_temporaries(target))


@pytest.mark.parametrize("verb", ["pack", "subset", "unpack", "simulate", "predict", "evaluate"])
def test_kill9_leaves_nothing_half_written_and_rerun_succeeds(tmp_path, world, verb):
    ref_args, ref, _ = _verbs(world, tmp_path / "ref")[verb]
    (tmp_path / "ref").mkdir()
    t0 = time.monotonic()
    res = _run(ref_args)
    assert res.returncode == 0, res.stderr
    duration = time.monotonic() - t0
    out = tmp_path / "out"
    out.mkdir()
    args, target, inputs = _verbs(world, out)[verb]
    before = _digest(inputs)
    rng = np.random.default_rng(zlib.crc32(verb.encode()))
    # First at the moment the temporary output appears (certainly mid-write), then at a
    # random point of the run (start-up, reading, writing or renaming).
    for aim in ("marker", "random"):
        proc = _spawn(args)
        if aim == "marker":
            _wait_for(_marker(verb, target), proc)
        else:
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(timeout=float(rng.uniform(0.1, duration)))
        proc.kill()
        proc.wait()
        if target.exists():
            assert _complete(verb, target, ref), f"{verb}: a partial output under {target}"
        if verb == "pack":
            for tmp in _temporaries(target):
                if tmp.is_dir():  # a killed pack's directory is not a store
                    assert _run(["verify", tmp]).returncode == 2
    assert _digest(inputs) == before
    res = _run([*args, "--force"] if target.exists() else args)
    assert res.returncode == 0, res.stderr
    assert _complete(verb, target, ref)
    assert _temporaries(target) == []  # the killed runs' temporaries are gone


def test_kill9_during_pack_force_keeps_the_old_store(tmp_path, world):
    st = tmp_path / "st"
    args = ["pack", world["reads"], "-o", st, "--mapping", world["mapping"], "--workers", "2"]
    assert _run(args).returncode == 0
    old = _digest([st])
    proc = _spawn([*args, "--force", "--seed", "7"])  # a different store under the same name
    _wait_for(lambda: bool(_temporaries(st)), proc)
    proc.kill()
    proc.wait()
    assert _digest([st]) == old
    assert _run(["verify", st]).returncode == 0


def test_train_kill9_then_resume_is_bit_exact(tmp_path, world):

    def args(out):
        return ["train", "-q", "--train", world["train"], "--val", world["val"], "--mapping",
                world["mapping"], "--model", world["model"], "-o", out, "--num-workers", "0",
                "--max-steps", "8", "--batch-size", "16", "--eval-steps", "8",
                "--save-steps", "2", "--lr", "3e-3", "--set", "data.augment_rc=true",
                "model.dropout=0.3", "train.final_eval=false", "train.record_reads=true",
                "train.save_total_limit=100", "train.load_best_at_end=false",
                "train.early_stopping_patience=null", "train.logging_steps=1"]

    from readtax.cli import main

    a, b = tmp_path / "a", tmp_path / "b"
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # as the killed process (OMP_NUM_THREADS=1): same arithmetic
    try:
        assert main([str(x) for x in args(a)]) == 0  # in-process: no second torch import
        step, recorded = _kill_resume(b, args(b), main)
    finally:
        torch.set_num_threads(threads)
    _same_run(a, b, step, recorded)


def _kill_resume(b: Path, args: list, main) -> tuple[int, list[str]]:
    """kill -9 once a checkpoint is complete, fake what a kill mid-checkpoint and mid-log
    leaves, resume; returns the checkpoint step resumed from and the reads recorded before."""
    from readtax.checkpoints import checkpoint_complete, latest_checkpoint

    proc = _spawn(args)
    _wait_for(lambda: checkpoint_complete(b / "checkpoints" / "checkpoint-2"), proc)
    proc.kill()
    proc.wait()
    ckpt = latest_checkpoint(b)
    assert ckpt is not None and ckpt.name != "checkpoint-8"
    step = int(ckpt.name.split("-")[1])
    # What a kill in the middle of the next checkpoint and of a log line leaves behind.
    half = b / "checkpoints" / f"checkpoint-{step + 2}"
    half.mkdir(exist_ok=True)
    (half / "readtax_weights.pt").write_bytes(b"\0" * 100)
    (half / "trainer_state.json").write_text('{"global_step": ')
    assert not checkpoint_complete(half) and latest_checkpoint(b) == ckpt
    with open(b / "metrics.jsonl", "a") as fh:
        fh.write('{"step": 99, "lo')
    recorded = (b / "debug" / "reads_rank0.txt").read_text().splitlines()
    assert main(["train", "-q", "--resume", str(b)]) == 0
    return step, recorded


def _same_run(a: Path, b: Path, step: int, recorded: list[str]) -> None:
    """Bit-identical weights and the same data order as the uninterrupted run ``a``."""
    wa = torch.load(a / "checkpoints" / "checkpoint-8" / "readtax_weights.pt",
                    weights_only=True)["state_dict"]
    wb = torch.load(b / "checkpoints" / "checkpoint-8" / "readtax_weights.pt",
                    weights_only=True)["state_dict"]
    assert wa.keys() == wb.keys()
    for k in wa:
        assert torch.equal(wa[k], wb[k]), k
    # Same data order: the resumed session continued right after the checkpoint's batches.
    order_a = (a / "debug" / "reads_rank0.txt").read_text().splitlines()
    order_b = (b / "debug" / "reads_rank0.txt").read_text().splitlines()
    assert len(order_a) == 8 * 16
    assert recorded[: step * 16] == order_a[: step * 16]
    assert order_b[len(recorded):] == order_a[step * 16:]
    events = [json.loads(x) for x in (b / "metrics.jsonl").read_text().splitlines()]
    assert max(e["step"] for e in events) == 8
    assert (b / "model" / "readtax_model.json").is_file()


NO_SPACE_LIMITS = {"pack": 64 << 10, "subset": 64 << 10, "unpack": 64 << 10,
                   "simulate": 64 << 10, "predict": 8 << 10, "evaluate": 4 << 10}


@pytest.mark.parametrize("verb", [*NO_SPACE_LIMITS, "stats", "init-model", "train"])
def test_full_disk_is_one_line_exit_2_and_no_partial_output(tmp_path, world, verb):
    """RLIMIT_FSIZE (ulimit -f) stands in for a full disk: writes fail with EFBIG."""
    if verb == "stats":
        args, target, inputs = (["stats", world["reads"], "--json", tmp_path / "s.json"],
                                tmp_path / "s.json", [world["reads"]])
    elif verb == "init-model":
        args, target, inputs = (["init-model", "-q", "--arch", "kmer-cnn", "--size", "tiny", "-o",
                                 tmp_path / "m"], tmp_path / "m", [])
    elif verb == "train":
        args = ["train", "-q", "--train", world["store"], "--val", world["val"],
                "--model", world["model"], "-o", tmp_path / "r", "--num-workers", "0",
                "--max-steps", "2", "--batch-size", "8", "--save-steps", "2",
                "--eval-steps", "2"]
        target, inputs = tmp_path / "r" / "model", [world["store"], world["model"]]
    else:
        args, target, inputs = _verbs(world, tmp_path)[verb]
    limit = {"stats": 256, "init-model": 64 << 10, "train": 64 << 10}.get(verb) or \
        NO_SPACE_LIMITS[verb]
    before = _digest(inputs)
    res = _run(args, fsize=limit)
    assert res.returncode == 2, res.stderr
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 1 and "no space" in lines[0], res.stderr
    assert f"readtax {verb}: error: " in lines[0]
    named = target.parent if verb == "evaluate" else target
    assert str(named.name) in lines[0] or verb == "train", lines[0]
    assert not target.exists()
    assert _temporaries(target) == []
    assert _digest(inputs) == before


INTERRUPTIBLE = ["pack", "subset", "unpack", "simulate", "predict", "evaluate", "train"]


@pytest.mark.parametrize("verb", INTERRUPTIBLE)
def test_ctrl_c_exits_130_and_removes_temporaries(tmp_path, world, verb):
    if verb == "train":
        run = tmp_path / "r"
        args = ["train", "-q", "--train", world["store"], "--val", world["val"], "--model",
                world["model"], "-o", run, "--num-workers", "0", "--max-steps", "400",
                "--batch-size", "8", "--save-steps", "2", "--eval-steps", "2"]
        target = run / "model"
        marker = lambda: (run / "checkpoints" / "checkpoint-2").is_dir()  # noqa: E731
    else:
        args, target, _ = _verbs(world, tmp_path)[verb]
        marker = _marker(verb, target)
    proc = _spawn(args)
    assert _wait_for(marker, proc), proc.communicate()[1]
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=60)
    if proc.returncode == 0:  # finished before the signal was handled: must be whole
        assert verb != "train"
        return
    assert proc.returncode == 130, err
    assert err.strip().splitlines()[-1] == f"readtax {verb}: interrupted"
    assert not target.exists()
    left = [p for p in tmp_path.rglob(".*") if p.name.endswith((".part", ".tmp", ".old"))]
    assert left == []


def test_second_train_into_one_run_dir_is_refused_first_unharmed(tmp_path, world, run):
    out = tmp_path / "r"
    args = ["train", "-q", "--train", world["store"], "--val", world["val"], "--model",
            world["model"], "-o", out, "--num-workers", "0", "--max-steps", "30",
            "--batch-size", "8", "--save-steps", "10", "--eval-steps", "10"]
    first = _spawn(args)
    _wait_for(lambda: (tmp_path / ".r.lock").exists(), first)
    second = run(*args, "--force")  # in-process: it reaches the lock in well under a second
    assert second.code == 2
    assert "in use by another readtax run" in second.err
    _, err = first.communicate(timeout=120)
    assert first.returncode == 0, err
    assert (out / "model" / "readtax_model.json").is_file()
    assert json.loads((out / "eval" / "metrics.json").read_text())["step"] == 30
    assert not (tmp_path / ".r.lock").exists()


def test_second_pack_into_one_store_is_refused(tmp_path, world):
    st = tmp_path / "st"
    with output_lock(st):
        res = _run(["pack", world["reads"], "-o", st, "--mapping", world["mapping"]])
        assert res.returncode == 2 and "in use by another readtax run" in res.stderr
        assert not st.exists()
        with pytest.raises(UsageError, match="in use"), output_lock(st):
            pass
    assert _run(["pack", world["reads"], "-o", st, "--mapping", world["mapping"]]
                ).returncode == 0


# -- corruption after verify -----------------------------------------------------------------


def _copy_store(src: Path, dst: Path) -> Path:
    dst.mkdir()
    for f in src.iterdir():
        (dst / f.name).write_bytes(f.read_bytes())
    return dst


def _damage(store: Path, how: str, other: Path) -> str:
    cls = next(p for p in store.iterdir() if p.name.startswith("classes."))
    if how == "truncate":
        f = store / F_BASES
        with open(f, "r+b") as fh:
            fh.truncate(f.stat().st_size - 3)
        return "truncated"
    if how == "flip":
        data = bytearray(cls.read_bytes())
        data[len(data) // 2] ^= 0x01
        cls.write_bytes(bytes(data))
        return "checksum"
    # swap: the class file of a store of the same reads packed with another seed (same size)
    cls.write_bytes((other / cls.name).read_bytes())
    return "checksum"


@pytest.fixture(scope="module")
def other_store(world, tmp_path_factory) -> Path:
    from readtax.labels import load_mapping

    d = tmp_path_factory.mktemp("other") / "store"
    pack([str(world["reads"])], d, mapping=load_mapping(world["mapping"]), seed=99, workers=1,
         progress=False)
    return d


@pytest.mark.parametrize("how", ["truncate", "flip", "swap"])
def test_store_corrupted_after_verify_is_refused(tmp_path, world, other_store, how, run):
    assert run("verify", world["store"]).code == 0
    bad = _copy_store(world["store"], tmp_path / "bad")
    word = _damage(bad, how, other_store)
    res = run("train", "--train", bad, "--val", world["val"], "--model", world["model"],
              "-o", tmp_path / "r", "--num-workers", "0", "--max-steps", "2")
    assert res.code == 2 and word in res.err and str(bad) in res.err, res.err
    assert not (tmp_path / "r" / "model").exists()
    res = run("evaluate", world["run"], "--data", bad, "-o", tmp_path / "ev")
    assert res.code == 2 and word in res.err, res.err
    assert not (tmp_path / "ev" / "metrics.json").exists()
    assert run("verify", bad).code == 2


def test_class_changed_after_open_is_an_error_not_a_wrong_label(tmp_path, world):
    bad = _copy_store(world["store"], tmp_path / "bad")
    store = ReadStore(bad)
    nc = len(store.label_map)
    assert store.labels([0, 1]).max() < nc
    arr = np.memmap(bad / store.class_file, dtype=store.classes.dtype, mode="r+")
    arr[1] = nc + 3
    arr.flush()
    with pytest.raises(StoreError, match=f"class index {nc + 3} but the store has {nc}"):
        store.batch([0, 1])
    with pytest.raises(StoreError, match="checksum"):
        ReadStore(bad)  # a fresh open (new size/mtime) checks the class file again


def test_store_truncated_while_open_is_an_error_not_sigbus(tmp_path, world):
    bad = _copy_store(world["store"], tmp_path / "bad")
    store = ReadStore(bad)
    last = len(store) - 1
    assert len(store.batch([0, last])) == 2
    f = bad / F_BASES
    with open(f, "r+b") as fh:
        fh.truncate(f.stat().st_size // 2)
    with pytest.raises(StoreError, match=f"file {F_BASES} changed while in use"):
        store.batch([0, last])  # the last read's bases lie past the new end


@pytest.mark.parametrize("name", ["model.safetensors", "head.safetensors"])
def test_damaged_model_file_is_refused_by_predict_and_evaluate(tmp_path, world, run, name):
    import shutil

    bad = tmp_path / "run"
    shutil.copytree(world["run"] / "model", bad / "model")
    f = bad / "model" / name
    with open(f, "r+b") as fh:
        fh.truncate(f.stat().st_size // 2)
    res = run("predict", bad, world["val"], "-o", tmp_path / "p.tsv", "--num-workers", "0")
    assert res.code == 2 and f"{name} is damaged" in res.err, res.err
    assert not (tmp_path / "p.tsv").exists()
    res = run("evaluate", bad, "--data", world["val"], "-o", tmp_path / "ev")
    assert res.code == 2 and f"{name} is damaged" in res.err, res.err


# -- the pieces: temporaries, modes, output checks --------------------------------------------


def test_stale_temporaries_of_dead_processes_only_are_removed(tmp_path):
    target = tmp_path / "out.tsv"
    dead = tmp_path / f".out.tsv.{HOST}-999999999-0123abcd.part"
    dead_dir = tmp_path / f".out.tsv.{HOST}-999999998-0123abcd.tmp"
    live = tmp_path / f".out.tsv.{HOST}-{os.getppid()}-0123abcd.part"
    other_host = tmp_path / ".out.tsv.elsewhere-999999999-0123abcd.part"
    unrelated = tmp_path / ".out.tsv.notes"
    for p in (dead, live, other_host, unrelated):
        p.write_text("x")
    dead_dir.mkdir()
    (dead_dir / "piece").write_text("x")
    assert sorted(clean_stale(target)) == sorted([dead, dead_dir])
    assert live.exists() and other_host.exists() and unrelated.exists()
    name = temp_name(target).name
    assert name.startswith(f".out.tsv.{HOST}-{os.getpid()}-") and name.endswith(".part")


@pytest.mark.parametrize("umask", [0o022, 0o027])
def test_outputs_and_weight_files_respect_the_umask(tmp_path, world, umask):
    from readtax.models import init_model, load_classifier, save_classifier
    from readtax.outputs import atomic_open

    old = os.umask(umask)
    try:
        init_model("kmer-cnn", "tiny", tmp_path / "m", seed=0)
        save_classifier(load_classifier(world["run"]), tmp_path / "saved")
        with atomic_open(tmp_path / "x.tsv") as fh:
            fh.write("a\n")
    finally:
        os.umask(old)
    files = [tmp_path / "m" / "model.safetensors", tmp_path / "saved" / "model.safetensors",
             tmp_path / "saved" / "head.safetensors", tmp_path / "saved" / "label_map.tsv",
             tmp_path / "x.tsv"]
    for f in files:
        assert f.stat().st_mode & 0o777 == 0o666 & ~umask, f
    for d in (tmp_path / "m", tmp_path / "saved"):
        assert d.stat().st_mode & 0o777 == 0o777 & ~umask, d


def _output_args(w: dict[str, Path], out: Path) -> dict[str, list]:
    """Every verb that writes, with its output at ``out``."""
    return {
        "stats-json": ["stats", w["reads"], "--json", out],
        "stats-tsv": ["stats", w["reads"], "--tsv", out],
        "subset": ["subset", w["reads"], "-o", out, "--per-species", "5"],
        "pack": ["pack", w["reads"], "-o", out],
        "unpack": ["unpack", w["store"], "-o", out],
        "init-model": ["init-model", "--arch", "kmer-cnn", "--size", "tiny", "-o", out],
        "predict": ["predict", w["run"], w["val"], "-o", out, "--num-workers", "0"],
        "simulate": ["simulate", *w["genomes"], "-o", out, "--mapping", w["gmap"],
                     "--reads-per-species", "5"],
    }


@pytest.mark.parametrize("verb", ["stats-json", "stats-tsv", "subset", "pack", "unpack",
                                  "init-model", "predict", "simulate"])
def test_every_verb_checks_its_output_the_same_way(tmp_path, world, run, verb):
    out = tmp_path / "exists"
    out.mkdir() if verb in ("pack", "init-model") else out.write_text("keep\n")
    if verb == "init-model":
        (out / "keep").write_text("keep\n")
    res = run(*_output_args(world, out)[verb])
    assert res.code == 2
    assert res.err.strip() == f"readtax {verb.split('-')[0] if verb.startswith('stats') else verb}" \
        f": error: output {out} exists (use --force to overwrite)"
    blocker = tmp_path / "file"
    blocker.write_text("x")
    res = run(*_output_args(world, blocker / "sub" / "o")[verb])
    assert res.code == 2 and f"output {blocker / 'sub' / 'o'}: {blocker} is not a directory" \
        in res.err, res.err
    if os.geteuid() != 0:  # root may write anywhere
        ro = tmp_path / "ro"
        ro.mkdir()
        ro.chmod(0o500)
        res = run(*_output_args(world, ro / "o")[verb])
        assert res.code == 2 and f"directory {ro} is not writable" in res.err, res.err


def test_evaluate_and_train_refuse_existing_outputs(tmp_path, world, run):
    ev = tmp_path / "ev"
    ev.mkdir()
    (ev / "metrics.json").write_text("{}")
    res = run("evaluate", world["run"], "--data", world["val"], "-o", ev)
    assert res.code == 2
    assert res.err.strip() == (f"readtax evaluate: error: output {ev / 'metrics.json'} exists "
                               "(use --force to overwrite)")
    res = run("train", "--train", world["train"], "--val", world["val"], "--mapping",
              world["mapping"], "--model", world["model"], "-o", world["run"])
    assert res.code == 2 and "already holds a run" in res.err


def test_stats_force_replaces_its_outputs(tmp_path, world, run):
    js, tsv = tmp_path / "s.json", tmp_path / "s.tsv"
    js.write_text("old\n")
    tsv.write_text("old\n")
    res = run("stats", world["val"], "--json", js, "--tsv", tsv)
    assert res.code == 2 and js.read_text() == "old\n" and res.out == ""  # refused up front
    res = run("stats", world["val"], "--json", js, "--tsv", tsv, "--force")
    assert res.code == 0, res.err
    assert json.loads(js.read_text())["reads"] == 160
    assert tsv.read_text().splitlines()[0] == "class_index\tclass_id\tlabel_name\ttax_id\treads"
    assert run("stats", world["val"], "--json", js, "--tsv", js, "--force").code == 2
