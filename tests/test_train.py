"""readtax train: learning, every family, exact resume, torchrun sharding, run directory."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("transformers")

from helpers_train import make_task  # noqa: E402
from readtax.cli import main  # noqa: E402
from readtax.config import load_config  # noqa: E402
from readtax.labels import load_mapping  # noqa: E402

FAMILIES = ["kmer-cnn", "metagene", "dnabert2", "dnabert"]
REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(autouse=True)
def one_thread():
    """One intra-op thread: on a small shared CPU more threads only contend with each other."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="session")
def tiny_models(tmp_path_factory) -> dict[str, Path]:
    """One tiny random stand-in per family (readtax init-model --size tiny)."""
    from readtax.models import init_model

    d = tmp_path_factory.mktemp("models")
    return {a: init_model(a, "tiny", d / a, seed=0) for a in FAMILIES}


@pytest.fixture(scope="session")
def task(tmp_path_factory) -> dict[str, Path]:
    return make_task(tmp_path_factory.mktemp("task"))


@pytest.fixture(scope="session")
def stores(task, tmp_path_factory) -> dict[str, Path]:
    """The task packed into stores (readtax pack)."""
    from readtax.store import pack

    d = tmp_path_factory.mktemp("stores")
    lm = load_mapping(task["mapping"])
    for name in ("train", "val"):
        pack([str(task[name])], d / name, mapping=lm, seed=0, workers=1, progress=False)
    return {"train": d / "train", "val": d / "val"}


def _args(task, model, out, *extra) -> list[str]:
    return ["train", "-q", "--train", str(task["train"]), "--val", str(task["val"]),
            "--mapping", str(task["mapping"]), "--model", str(model), "-o", str(out),
            "--num-workers", "0", *extra]


def _events(run: Path) -> list[dict]:
    return [json.loads(x) for x in (run / "metrics.jsonl").read_text().splitlines()]


def _weights(run: Path, step: int) -> dict:
    blob = torch.load(run / "checkpoints" / f"checkpoint-{step}" / "readtax_weights.pt",
                      weights_only=True)
    return blob["state_dict"]


def test_kmer_cnn_learns_easy_task(tmp_path, task, tiny_models):
    run = tmp_path / "run"
    rc = main(_args(task, tiny_models["kmer-cnn"], run, "--max-steps", "40", "--batch-size",
                    "32", "--lr", "2e-2", "--eval-steps", "20", "--save-steps", "20",
                    "--set", "train.warmup_steps=3", "train.logging_steps=10"))
    assert rc == 0
    res = json.loads((run / "eval" / "metrics.json").read_text())
    assert res["accuracy"] > 0.9, res["accuracy"]
    assert res["reads"] == 4 * 20  # the fixed validation sample: 20 reads per class
    # Run directory layout.
    for rel in ("model/readtax_model.json", "label_map.tsv", "config.yaml", "metrics.jsonl",
                "plots/loss.png", "plots/accuracy.png", "plots/macro_f1.png",
                "eval/per_class.tsv", "eval/confusions.tsv", "eval/confusion.png",
                "eval/reliability.png"):
        assert (run / rel).is_file(), rel
    assert any(p.name.startswith("events.out.tfevents") for p in (run / "tb").iterdir())
    assert load_mapping(run / "label_map.tsv") == load_mapping(task["mapping"])
    cfg = load_config(run / "config.yaml")
    assert cfg.train.max_steps == 40 and cfg.train.lr == pytest.approx(2e-2)
    ev = _events(run)
    train_logs = [e for e in ev if "loss" in e]
    assert [e["step"] for e in train_logs] == [1, 10, 20, 30, 40]
    assert train_logs[-1]["reads"] == 40 * 32 and train_logs[-1]["reads_per_s"] > 0
    evals = [e for e in ev if "eval_macro_f1" in e]
    assert [e["step"] for e in evals] == [20, 40]
    ckpts = sorted(p.name for p in (run / "checkpoints").iterdir())
    assert ckpts == ["checkpoint-20", "checkpoint-40"]
    # The model card: training data summary and the final validation metrics.
    card = (run / "model" / "README.md").read_text()
    for want in (f"- training data: {task['train']}", "- classes: 4", "- optimiser steps: 40",
                 f"- reads seen: {40 * 32}", f"| accuracy | {res['accuracy']:.4f} |",
                 f"| macro_f1 | {res['macro_f1']:.4f} |", "- family: `kmer-cnn`"):
        assert want in card, want
    assert json.loads((run / "model" / "config.json").read_text())["num_labels"] == 4


@pytest.fixture(scope="session")
def small_task(tmp_path_factory) -> dict[str, Path]:
    """Two classes x 16 reads: a set every family can fit in a few steps."""
    return make_task(tmp_path_factory.mktemp("small"), n_classes=2, train_per_class=16,
                     val_per_class=4)


@pytest.mark.parametrize("arch,lora", [("kmer-cnn", None), ("metagene", False),
                                       ("metagene", True), ("dnabert2", None),
                                       ("dnabert", None)])
def test_every_family_trains_and_loss_goes_down(tmp_path, small_task, tiny_models, arch, lora):
    """A few steps on a small set: the loss on that set falls (before: fresh seeded model)."""
    from torch.utils.data import DataLoader

    from readtax.evaluate import stream_eval
    from readtax.models import build_classifier, load_classifier
    from readtax.sources import Collate, open_data

    label_map = load_mapping(small_task["mapping"])

    def loss_on_training_set(model) -> float:
        ds = open_data([str(small_task["train"])], "eval", label_map=label_map, batch_size=32,
                       per_class=100, seed=0).dataset
        loader = DataLoader(ds, batch_size=None,
                            collate_fn=Collate(model.collator, keep_batch=False))
        return stream_eval(model, loader, len(label_map)).compute()["loss"]

    from readtax.models import ModelOptions

    before = loss_on_training_set(
        build_classifier(tiny_models[arch], label_map, options=ModelOptions(lora=lora), seed=0))
    run = tmp_path / "run"
    flag = [] if lora is None else ["--lora" if lora else "--no-lora"]
    args = ["train", "-q", "--train", str(small_task["train"]), "--val", str(small_task["train"]),
            "--mapping", str(small_task["mapping"]), "--model", str(tiny_models[arch]),
            "-o", str(run), "--num-workers", "0", "--max-steps", "12", "--batch-size", "16",
            "--lr", "2e-2" if arch == "kmer-cnn" else "3e-3", "--eval-steps", "12",
            "--save-steps", "12", *flag,
            "--set", "train.warmup_steps=0", "train.final_eval=false",
            "data.val_per_class=100", "data.shuffle_buffer=64"]
    assert main(args) == 0
    after = loss_on_training_set(load_classifier(run / "model"))
    assert after < 0.8 * before, (before, after)
    kind = torch.load(run / "checkpoints" / "checkpoint-12" / "readtax_weights.pt",
                      weights_only=True)
    if lora:  # small checkpoints: adapters and head only
        assert kind["kind"] == "trainable"
        assert all("lora_" in k or k.startswith("head.") for k in kind["state_dict"])
    else:
        assert kind["kind"] == "full"


def _resume_args(task, model, out, *extra):
    return _args(task, model, out, "--max-steps", "8", "--batch-size", "16", "--eval-steps",
                 "2", "--save-steps", "2", "--lr", "3e-3", "--set",
                 "train.load_best_at_end=false", "train.early_stopping_patience=null",
                 "data.augment_rc=true", "model.dropout=0.3", "train.logging_steps=1",
                 "train.final_eval=false", *extra)


def test_resume_equals_uninterrupted_run(tmp_path, task, tiny_models):
    """8 steps straight == 4 steps, stop (cosine schedule of 8 kept), resume to 8."""
    model = tiny_models["kmer-cnn"]
    a, b = tmp_path / "a", tmp_path / "b"
    assert main(_resume_args(task, model, a)) == 0
    assert main(_resume_args(task, model, b, "--stop-after", "4")) == 0
    assert not (b / "model").exists()  # paused, not finished
    state = json.loads((b / "checkpoints" / "checkpoint-4" / "readtax_data_state.json")
                       .read_text())
    assert state["reads_seen"] == 4 * 16 and state["world_size"] == 1
    assert main(["train", "-q", "--resume", str(b)]) == 0
    wa, wb = _weights(a, 8), _weights(b, 8)
    assert wa.keys() == wb.keys()
    for k in wa:
        assert torch.equal(wa[k], wb[k]), k
    # The resumed run logged the same losses and evaluations (events after step 4 replaced).
    ea = [e for e in _events(a) if "loss" in e or "eval_loss" in e]
    eb = [e for e in _events(b) if "loss" in e or "eval_loss" in e]
    assert [e["step"] for e in ea] == [e["step"] for e in eb]
    for x, y in zip(ea, eb):
        for k in ("loss", "eval_loss", "eval_macro_f1", "learning_rate", "reads"):
            if k in x:
                assert x[k] == pytest.approx(y[k], rel=1e-6, abs=1e-9), (x["step"], k)
    assert load_config(b / "config.yaml").train.stop_after is None


def test_frozen_backbone_checkpoints_hold_only_trainable_weights(tmp_path, task, tiny_models):
    run = tmp_path / "run"
    assert main(_args(task, tiny_models["kmer-cnn"], run, "--max-steps", "2", "--batch-size",
                      "8", "--eval-steps", "2", "--save-steps", "2", "--freeze-backbone",
                      "--set", "train.final_eval=false")) == 0
    blob = torch.load(run / "checkpoints" / "checkpoint-2" / "readtax_weights.pt",
                      weights_only=True)
    assert blob["kind"] == "trainable"
    assert {k.split(".")[0] for k in blob["state_dict"]} == {"head"}


def test_torchrun_two_processes_see_disjoint_reads(tmp_path, stores, tiny_models):
    """2 CPU processes (gloo) on a store: every rank trains on its own reads."""
    from readtax.store import ReadStore

    run = tmp_path / "run"
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(REPO / "src")}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node",
           "2", "-m", "readtax", "train", "-q", "--train", str(stores["train"]),
           "--val", str(stores["val"]), "--model", str(tiny_models["kmer-cnn"]), "-o", str(run),
           "--num-workers", "1", "--max-steps", "6", "--batch-size", "16", "--eval-steps", "3",
           "--save-steps", "3", "--set", "train.record_reads=true"]
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=150)
    assert proc.returncode == 0, proc.stderr[-3000:]
    seen = [np.loadtxt(run / "debug" / f"reads_rank{r}.txt", dtype=np.int64) for r in (0, 1)]
    assert len(seen[0]) == len(seen[1]) == 6 * 16
    n = len(ReadStore(stores["train"]))
    both = np.concatenate(seen)
    assert len(np.unique(both)) == len(both) and both.min() >= 0 and both.max() < n
    state = json.loads((run / "checkpoints" / "checkpoint-6" / "readtax_data_state.json")
                       .read_text())
    assert state["world_size"] == 2 and len(state["states"]) == 2
    assert state["reads_seen"] == 2 * 6 * 16
    assert (run / "model" / "readtax_model.json").is_file()
    # The validation sample is split between the ranks and summed: 20 per class in all.
    assert json.loads((run / "eval" / "metrics.json").read_text())["reads"] == 80


def test_store_resume_equals_uninterrupted_run(tmp_path, stores, tiny_models):
    def args(out, *extra):
        return ["train", "-q", "--train", str(stores["train"]), "--val", str(stores["val"]),
                "--model", str(tiny_models["kmer-cnn"]), "-o", str(out), "--num-workers", "2",
                "--max-steps", "6", "--batch-size", "16", "--eval-steps", "3",
                "--save-steps", "3", "--lr", "3e-3", "--set", "data.augment_rc=true",
                "model.dropout=0.3", "train.final_eval=false", *extra]

    a, b = tmp_path / "a", tmp_path / "b"
    assert main(args(a)) == 0
    assert main(args(b, "--stop-after", "3")) == 0
    state = json.loads((b / "checkpoints" / "checkpoint-3" / "readtax_data_state.json")
                       .read_text())
    assert state["states"][0]["batch"] == 3 and state["states"][0]["epoch"] == 0
    assert main(["train", "-q", "--resume", str(b)]) == 0
    wa, wb = _weights(a, 6), _weights(b, 6)
    for k in wa:
        assert torch.equal(wa[k], wb[k]), k
    ev = [e for e in _events(a) if "eval_reads" in e]
    assert ev and ev[0]["eval_reads"] == 80  # stratified sample of the val store



def test_existing_run_needs_resume_or_force(tmp_path, task, tiny_models, capsys):
    run = tmp_path / "run"
    args = _args(task, tiny_models["kmer-cnn"], run, "--max-steps", "1", "--batch-size", "8",
                 "--set", "train.final_eval=false")
    assert main(args) == 0
    capsys.readouterr()
    assert main(args) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "--resume" in err[0]
    assert main([*args, "--force"]) == 0


def test_config_problems_exit_2_on_one_line(tmp_path, task, tiny_models, capsys):
    rc = main(["train", "--train", str(task["train"]), "--model", "m", "--batch-size", "0",
               "--set", "train.schedule=wavy", "train.nope=1"])
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 2 and len(err) == 1
    for s in ("train.batch_size", "train.schedule", "train.nope", "data.val", "output"):
        assert s in err[0]


def test_resume_without_checkpoint_is_a_usage_error(tmp_path, capsys):
    (tmp_path / "r").mkdir()
    assert main(["train", "--resume", str(tmp_path / "r")]) == 2
    assert "not a run directory" in capsys.readouterr().err


def test_print_config_shows_overrides(task, capsys):
    cfg = REPO / "configs" / "kmer-cnn.yaml"
    assert main(["train", "--config", str(cfg), "--print-config", "--lr", "0.5",
                 "--set", "train.schedule=linear"]) == 0
    out = capsys.readouterr().out
    assert "lr: 0.5" in out and "schedule: linear" in out
    # --eval-steps alone: checkpoints follow it (save_steps null), no multiple-of error.
    assert main(["train", "--print-config", "--eval-steps", "60", "--set",
                 "model.lora_targets=[q_proj, v_proj]"]) == 0
    out = capsys.readouterr().out
    assert "eval_steps: 60" in out and "save_steps: null" in out
    assert "lora_targets:\n  - q_proj\n  - v_proj" in out




def test_estimate_train_reads(task):
    from readtax.train import estimate_train_reads

    n, exact = estimate_train_reads([str(task["train"])])
    assert not exact and 0.8 * 1600 < n < 1.2 * 1600


def test_estimate_train_reads_of_a_store_is_its_manifest_read_count(stores):
    from readtax.store import load_manifest
    from readtax.train import estimate_train_reads

    assert load_manifest(stores["train"])["read_count"] == 1600
    assert estimate_train_reads([str(stores["train"])]) == (1600, True)


def test_default_trains_whole_epochs_over_the_store(tmp_path, stores, tiny_models):
    """No max_steps: ceil(1.5 x 1600 / 128) = 19 steps, no cap; reads seen = epochs x read
    count within one batch, and the logged epoch is reads seen / read count."""
    run = tmp_path / "run"
    assert main(["train", "-q", "--train", str(stores["train"]), "--val", str(stores["val"]),
                 "--model", str(tiny_models["kmer-cnn"]), "-o", str(run), "--num-workers", "0",
                 "--epochs", "1.5", "--batch-size", "128",
                 "--set", "train.logging_steps=1", "train.final_eval=false"]) == 0
    saved = load_config(run / "config.yaml").train
    assert saved.max_steps == 19 and saved.epochs == 1.5 and saved.auto_max_steps is None
    logs = [e for e in _events(run) if "loss" in e]
    assert [e["step"] for e in logs] == list(range(1, 20))
    last = logs[-1]
    assert last["reads"] == 19 * 128 and abs(last["reads"] - 1.5 * 1600) < 128
    assert last["epoch"] == pytest.approx(19 * 128 / 1600, abs=1e-4)
    assert logs[0]["epoch"] == pytest.approx(128 / 1600, abs=1e-4)


def test_auto_max_steps_caps_only_when_set_and_max_steps_overrides_epochs(tmp_path, task,
                                                                          tiny_models):
    run = tmp_path / "run"
    assert main(_args(task, tiny_models["kmer-cnn"], run, "--batch-size", "64", "--stop-after",
                      "1", "--set", "train.auto_max_steps=3", "train.final_eval=false")) == 0
    assert load_config(run / "config.yaml").train.max_steps == 3
    run2 = tmp_path / "run2"
    assert main(_args(task, tiny_models["kmer-cnn"], run2, "--epochs", "5", "--max-steps", "2",
                      "--batch-size", "8", "--set", "train.final_eval=false",
                      "train.logging_steps=1")) == 0
    assert load_config(run2 / "config.yaml").train.max_steps == 2
    assert [e["step"] for e in _events(run2) if "loss" in e][-1] == 2


def test_gradient_checkpointing_null_is_off_on_cpu_and_probe_counts_tokens(task, stores,
                                                                            tiny_models):
    from readtax.models import build_classifier
    from readtax.train import TrainRecipe, probe_read_length, probe_tokens

    cfg = load_config(None, [("data.train", [str(stores["train"])])], require_paths=False)
    assert cfg.model.gradient_checkpointing is None
    assert probe_read_length(cfg.data.train) == 100  # the task's reads are 100 bp
    from readtax.batch import SeqBatch

    model = build_classifier(tiny_models["metagene"], load_mapping(task["mapping"]))

    ref = model.collator(SeqBatch.from_strings(["ACGT" * 25], np.array([0])))["input_ids"]
    assert probe_tokens(model, 100) == ref.shape[1]
    assert TrainRecipe(cfg).checkpointing_needed(model, "fp32", cuda=False) is False


def test_training_arguments_avoid_per_step_syncs(tmp_path, task, tiny_models, monkeypatch):
    import transformers

    from readtax.models import build_classifier
    from readtax.sources import quiet_tokenizer_threads
    from readtax.train import TrainRecipe

    cfg = load_config(None, [("output", str(tmp_path / "r")), ("train.batch_size", 64)],
                      require_paths=False)
    assert cfg.train.torch_compile is False
    recipe = TrainRecipe(cfg)
    recipe.model = build_classifier(tiny_models["dnabert2"], load_mapping(task["mapping"]))
    args = recipe.training_args(transformers, 10, "fp32", False)
    assert not args.torch_compile and not args.logging_nan_inf_filter
    assert args.optim == "adamw_torch_fused" and args.ddp_find_unused_parameters is False
    cfg.train.torch_compile = True
    recipe.model.arch = "auto"  # a generic backbone may have unused parts
    args = recipe.training_args(transformers, 10, "fp32", False)
    assert args.torch_compile and args.ddp_find_unused_parameters is True
    class Empty(torch.utils.data.IterableDataset):
        def __iter__(self):
            return iter(())

    loader = recipe.make_loader(Empty(), None, 2)
    assert loader.worker_init_fn is quiet_tokenizer_threads and loader.pin_memory is False
    monkeypatch.setenv("TOKENIZERS_PARALLELISM", "true")
    quiet_tokenizer_threads(0)
    assert os.environ["TOKENIZERS_PARALLELISM"] == "false"


@pytest.mark.parametrize("arch", FAMILIES)
def test_every_trainable_parameter_gets_a_gradient(task, tiny_models, arch):
    """Why DDP can run with find_unused_parameters=False for every family."""
    from readtax.batch import SeqBatch
    from readtax.models import build_classifier

    model = build_classifier(tiny_models[arch], load_mapping(task["mapping"]))
    batch = SeqBatch.from_strings(["ACGTTGCAAC" * 8, "GGCATTACGA" * 5], np.array([0, 1]))
    model(**model.collator(batch)).loss.backward()
    missing = [n for n, p in model.named_parameters() if p.requires_grad and p.grad is None]
    assert missing == []


def test_stream_eval_on_device_equals_host_metrics(task, tiny_models):
    """A fixed model: the device-accumulated evaluation equals per-batch host metrics."""
    from torch.utils.data import DataLoader

    from readtax.evaluate import stream_eval
    from readtax.metrics import StreamingMetrics
    from readtax.models import build_classifier
    from readtax.sources import Collate, open_data

    label_map = load_mapping(task["mapping"])
    model = build_classifier(tiny_models["dnabert2"], label_map, seed=3).eval()
    ds = open_data([str(task["val"])], "eval", label_map=label_map, batch_size=25,
                   per_class=None, seed=0).dataset

    def loader():
        return DataLoader(ds, batch_size=None,
                          collate_fn=Collate(model.collator, keep_batch=False))

    host = StreamingMetrics(len(label_map))
    with torch.no_grad():
        for inputs in loader():
            inputs = {k: v for k, v in inputs.items() if not k.startswith("_")}
            out = model(**inputs)
            host.update(out.logits, inputs["labels"], loss=float(out.loss))
    got = stream_eval(model, loader(), len(label_map))
    assert got.total == 240 and got.compute() == host.compute()


def test_evaluations_share_one_persistent_loader_and_agree(tmp_path, stores, tiny_models):
    from readtax.train import TrainRecipe, eval_batch_size

    cfg = load_config(None, [("data.train", [str(stores["train"])]),
                             ("data.val", [str(stores["val"])]), ("data.num_workers", 1),
                             ("model.path", str(tiny_models["kmer-cnn"])),
                             ("output", str(tmp_path / "run")), ("train.batch_size", 16)])
    assert eval_batch_size(cfg) == 64
    recipe = TrainRecipe(cfg).setup()
    assert recipe.trainer.args.per_device_eval_batch_size == 64
    first = recipe.trainer.evaluate()
    loader = recipe.eval_loader()
    assert loader.persistent_workers and loader.num_workers == 1
    second = recipe.trainer.evaluate()
    assert recipe.eval_loader() is loader
    drop = ("eval_runtime", "eval_samples_per_second", "eval_steps_per_second", "epoch")
    assert {k: v for k, v in first.items() if k not in drop} == \
        {k: v for k, v in second.items() if k not in drop}
    assert first["eval_accuracy"] >= 0 and recipe.last_eval.total == 80


def _gpu_bench():
    import importlib.util

    spec = importlib.util.spec_from_file_location("gpu_train", REPO / "benchmarks" / "gpu_train.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_gpu_benchmark_set_up_path_on_cpu(tmp_path, capsys):
    """benchmarks/gpu_train.py: exits cleanly without CUDA; --tiny runs each tiny model in its
    own subprocess through the real training path on the CPU."""
    bench = _gpu_bench()
    if not torch.cuda.is_available():
        assert bench.main([]) == 0
        assert "no CUDA device" in capsys.readouterr().out
    out = tmp_path / "res.json"
    assert bench.main(["--tiny", "--workdir", str(tmp_path / "w"), "--json", str(out)]) == 0
    printed = capsys.readouterr().out
    res = json.loads(out.read_text())["results"]
    assert [r["model"] for r in res] == ["metagene", "dnabert2"]
    for r in res:
        assert r["reads_per_s"] > 0 and r["steps"] >= 1 and r["tokens_per_read"] > 10
        assert 0 < r["real_tokens_per_read"] <= r["tokens_per_read"]
        assert r["loader_alone_reads_per_s"] > 0 and r["batch_size"] == 8
        assert r["epoch_558m_hours_1gpu"] == pytest.approx(
            558e6 / r["reads_per_s"] / 3600, rel=0.01)
        assert r["epoch_558m_hours_8gpu"] == pytest.approx(r["epoch_558m_hours_1gpu"] / 8,
                                                           rel=0.01, abs=0.1)
        assert r["mfu"] is None and r["gradient_checkpointing"] is False  # CPU: no peak, no GC
    assert res[0]["params_trainable"] < res[0]["params_non_embedding"]  # LoRA
    assert "epoch_558m_hours_8gpu" in printed and "mfu" in printed


def test_gpu_benchmark_mfu_is_6n_per_real_token():
    bench = _gpu_bench()
    assert bench.utilisation(1_000, 2_000.0, 1.2e7, False) == (1.0, 1.0)
    mfu, hfu = bench.utilisation(1_000, 2_000.0, 1.2e7, True)
    assert mfu == 1.0 and hfu == pytest.approx(8 / 6)
    assert bench.utilisation(1_000, 2_000.0, None, True) == (None, None)
    assert bench.epoch_hours(1000.0, 8) == pytest.approx(558e6 / 8000 / 3600)


def test_defaults_one_epoch_and_family_lr(tmp_path, task, tiny_models):
    from readtax.train import estimate_train_reads

    run = tmp_path / "run"
    assert main(_args(task, tiny_models["kmer-cnn"], run, "--batch-size", "64",
                      "--stop-after", "1", "--set", "train.final_eval=false")) == 0
    reads, _ = estimate_train_reads([str(task["train"])])
    saved = load_config(run / "config.yaml").train
    assert saved.max_steps == -(-reads // 64)
    assert saved.lr == pytest.approx(2e-2)  # the kmer-cnn default learning rate


def test_family_batch_size_default(tmp_path, task, tiny_models):
    """No batch size given: kmer-cnn trains on 512 reads a step, and the run records it."""
    from readtax.train import estimate_train_reads

    run = tmp_path / "run"
    assert main(_args(task, tiny_models["kmer-cnn"], run, "--stop-after", "1",
                      "--set", "train.final_eval=false")) == 0
    saved = load_config(run / "config.yaml").train
    reads, _ = estimate_train_reads([str(task["train"])])
    assert saved.batch_size == 512
    assert saved.max_steps == -(-reads // 512)


def test_early_stopping_on_macro_f1(tmp_path, task, tiny_models):
    """lr 0: macro-F1 never improves, so patience 1 stops at the second evaluation."""
    run = tmp_path / "run"
    assert main(_args(task, tiny_models["kmer-cnn"], run, "--max-steps", "20", "--batch-size",
                      "8", "--lr", "0", "--eval-steps", "2", "--save-steps", "2",
                      "--set", "train.early_stopping_patience=1", "train.final_eval=false")) == 0
    evals = [e["step"] for e in _events(run) if "eval_macro_f1" in e]
    assert evals == [2, 4]
    state = json.loads((run / "checkpoints" / "checkpoint-4" / "trainer_state.json").read_text())
    assert state["best_global_step"] == 2
    assert (run / "model" / "readtax_model.json").is_file()


def test_progress_bar_shows_reads_per_second(tmp_path, task, tiny_models, capsys):
    run = tmp_path / "run"
    assert main(_args(task, tiny_models["kmer-cnn"], run, "--max-steps", "3", "--batch-size",
                      "8", "--set", "train.progress=true", "train.final_eval=false")) == 0
    err = capsys.readouterr().err
    assert "reads/s" in err and "3/3" in err


def test_train_log_lines_one_format_on_and_off_a_terminal(tmp_path, task, tiny_models, capsys,
                                                          monkeypatch):
    """``step N: key=value ...`` whether a bar is drawn or not; progress lines off a terminal."""
    import re

    monkeypatch.setenv("READTAX_PROGRESS_INTERVAL", "1e-9")
    outs = {}
    for name, extra in (("plain", []), ("bar", ["train.progress=true"])):
        args = _args(task, tiny_models["kmer-cnn"], tmp_path / name, "--max-steps", "3",
                     "--batch-size", "8", "--set", "train.logging_steps=1",
                     "train.final_eval=false", *extra)
        args.remove("-q")
        assert main(args) == 0
        outs[name] = capsys.readouterr().err
    step_line = re.compile(r"^step (\d+): loss=\S+ .*reads=\d+ reads_per_s=\S+")
    for name, err in outs.items():
        # A log line starts its own line even while a bar is drawn (the bar is cleared first).
        steps = [int(m.group(1)) for ln in err.replace("\r\033[K", "\n").splitlines()
                 if (m := step_line.match(ln))]
        assert steps[:3] == [1, 2, 3], (name, err)
        assert "{'loss'" not in err and "'loss':" not in err  # no raw dicts
    assert "\r" not in outs["plain"] and re.search(r"^train  3/3 steps \(100%\)", outs["plain"], re.M)
    assert "\rtrain  3/3 steps (100%)" in outs["bar"] and "reads/s" in outs["bar"]
