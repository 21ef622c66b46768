"""Model families: stand-ins, DNABERT-2 against the official outputs, tokenizers, save/load."""

from __future__ import annotations

import hashlib
import json
import pickle
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load_file, save_file

from readtax.batch import SeqBatch
from readtax.cli import main
from readtax.errors import ModelError, UsageError
from readtax.labels import LabelMap
from readtax.models import (
    ARCHS,
    ModelOptions,
    activation_bytes,
    build_classifier,
    count_parameters,
    detect_arch,
    init_model,
    load_classifier,
    load_trainable_state_dict,
    merge_lora,
    model_config,
    resolve_model_dir,
    save_classifier,
    trainable_state_dict,
)
from readtax.models.dnabert2 import alibi_slopes, load_model
from readtax.models.registry import load_backbone
from readtax.models.tokenizers import (
    BaseCollator,
    HFCollator,
    KmerCollator,
    dnabert_vocab,
    packaged_tokenizer_dir,
)

FIXTURES = Path(__file__).parent / "fixtures"
DNABERT2_FIXTURES = ("dnabert2-tiny", "dnabert2-tiny-h12")
BATCHES = ("b0_padded_3rows", "b1_single_row_nopad", "b2_two_rows_len33_len2",
           "b3_single_row_padded", "b4_typical_read_len32_x4", "b5_longer_than_alibi_512")
LABELS = LabelMap.from_ids([3, 7, 11], names=["a", "b", "c"], tax_ids=[30, 70, 110])


def _reads(n: int = 6, seed: int = 0) -> SeqBatch:
    rng = np.random.default_rng(seed)
    seqs = ["".join(rng.choice(list("ACGT"), size=int(rng.integers(40, 151)))) for _ in range(n)]
    seqs[1] = seqs[1][:20] + "N" + seqs[1][21:]
    return SeqBatch.from_strings(seqs, np.array([0, 1, 2, -1, 0, 1][:n]))


@pytest.fixture(scope="module")
def standins(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("standins")
    return {arch: init_model(arch, "tiny", root / arch, seed=1) for arch in ARCHS}


# -- DNABERT-2 against the official code -------------------------------------------------------


def _fixture(name: str):
    d = FIXTURES / name
    cfg = json.loads((d / "config.json").read_text())
    inputs = {b["name"]: b for b in json.loads((d / "inputs.json").read_text())["batches"]}
    return d, cfg, inputs, load_file(str(d / "expected.safetensors"))


@pytest.fixture(scope="module", params=DNABERT2_FIXTURES)
def dnabert2_fixture(request):
    d, cfg, inputs, expected = _fixture(request.param)
    model = load_model(cfg, load_file(str(d / "model.safetensors"))).eval()
    return model, cfg, inputs, expected


@pytest.mark.parametrize("batch", BATCHES)
def test_dnabert2_matches_official_outputs(dnabert2_fixture, batch):
    model, _, inputs, expected = dnabert2_fixture
    ids = torch.tensor(inputs[batch]["input_ids"])
    mask = torch.tensor(inputs[batch]["attention_mask"])
    with torch.no_grad():
        hidden = model(ids, mask)
    want = expected[f"{batch}.last_hidden_state"]
    real = mask.bool()
    torch.testing.assert_close(hidden[real], want[real], atol=1e-5, rtol=1e-5)
    assert torch.equal(hidden[~real], torch.zeros_like(hidden[~real]))  # official: exact zeros
    pooled = (hidden * mask[..., None]).sum(1) / mask.sum(1, keepdim=True)
    torch.testing.assert_close(pooled, expected[f"{batch}.mean_pooled_masked"],
                               atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("batch", BATCHES)
def test_dnabert2_unpadded_path_matches_official_and_padded(dnabert2_fixture, batch):
    """The varlen path (per-read torch reference on CPU) against the fixtures and SDPA."""
    model, _, inputs, expected = dnabert2_fixture
    ids = torch.tensor(inputs[batch]["input_ids"])
    mask = torch.tensor(inputs[batch]["attention_mask"])
    try:
        model.attn_impl = "varlen"
        with torch.no_grad():
            unpadded = model(ids, mask)
        model.attn_impl = "sdpa"
        with torch.no_grad():
            padded = model(ids, mask)
    finally:
        model.attn_impl = "auto"
    real = mask.bool()
    torch.testing.assert_close(unpadded[real], expected[f"{batch}.last_hidden_state"][real],
                               atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(unpadded, padded, atol=1e-5, rtol=1e-5)
    assert torch.equal(unpadded[~real], torch.zeros_like(unpadded[~real]))


@pytest.mark.gpu
def test_dnabert2_flash_varlen_matches_official_on_cuda():
    """On a GPU with flash-attn: the varlen kernel path (bf16) against the fixtures and SDPA."""
    if not torch.cuda.is_available():
        pytest.skip("needs a CUDA device")
    pytest.importorskip("flash_attn")
    d, cfg, inputs, expected = _fixture("dnabert2-tiny-h12")
    model = load_model(cfg, load_file(str(d / "model.safetensors"))).cuda().eval()
    for batch in BATCHES:
        ids = torch.tensor(inputs[batch]["input_ids"]).cuda()
        mask = torch.tensor(inputs[batch]["attention_mask"]).cuda()
        with torch.no_grad(), torch.autocast("cuda", dtype=torch.bfloat16):
            model.attn_impl = "auto"  # flash varlen here
            flash = model(ids, mask).float()
            model.attn_impl = "sdpa"
            padded = model(ids, mask).float()
        real = mask.bool()
        want = expected[f"{batch}.last_hidden_state"].cuda()
        torch.testing.assert_close(flash[real], want[real], atol=5e-2, rtol=5e-2)
        torch.testing.assert_close(flash, padded, atol=5e-2, rtol=5e-2)


def test_dnabert2_slopes_are_an_fp32_buffer_outside_the_state_dict(monkeypatch):
    from readtax.models import dnabert2

    d, cfg, inputs, _ = _fixture("dnabert2-tiny-h12")
    model = load_model(cfg, load_file(str(d / "model.safetensors"))).eval()
    want = torch.tensor(alibi_slopes(cfg["num_attention_heads"]), dtype=torch.float32)
    assert "alibi_slopes" not in model.state_dict()
    assert torch.equal(model.alibi_slopes, want)
    model.to(torch.bfloat16)
    assert model.alibi_slopes.dtype == torch.float32 and torch.equal(model.alibi_slopes, want)
    assert model.embeddings.word_embeddings.weight.dtype == torch.bfloat16
    model.float()

    def no_host_slopes(*a, **k):
        raise AssertionError("slopes rebuilt on the host during forward")

    monkeypatch.setattr(dnabert2, "alibi_slopes", no_host_slopes)
    ids = torch.tensor(inputs["b0_padded_3rows"]["input_ids"])
    mask = torch.tensor(inputs["b0_padded_3rows"]["attention_mask"])
    with torch.no_grad():
        model(ids, mask)


def test_dnabert2_bias_built_once_per_forward_in_the_compute_dtype(monkeypatch):
    d, cfg, inputs, _ = _fixture("dnabert2-tiny")
    model = load_model(cfg, load_file(str(d / "model.safetensors"))).eval()
    model.attn_impl = "sdpa"
    built = []
    original = model.attention_bias

    def spy(mask, dtype):
        out = original(mask, dtype)
        built.append(out.dtype)
        return out

    monkeypatch.setattr(model, "attention_bias", spy)
    ids = torch.tensor(inputs["b0_padded_3rows"]["input_ids"])
    mask = torch.tensor(inputs["b0_padded_3rows"]["attention_mask"])
    with torch.no_grad():
        model(ids, mask)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            model(ids, mask)
    assert cfg["num_hidden_layers"] > 1 and built == [torch.float32, torch.bfloat16]


def test_dnabert2_rows_alone_match_padded_batch(dnabert2_fixture):
    """Every row of the padded batches, run unpadded on its own, matches the official output."""
    model, _, inputs, expected = dnabert2_fixture
    for batch in ("b0_padded_3rows", "b2_two_rows_len33_len2", "b4_typical_read_len32_x4"):
        ids = torch.tensor(inputs[batch]["input_ids"])
        mask = torch.tensor(inputs[batch]["attention_mask"])
        for r in range(len(ids)):
            n = int(mask[r].sum())
            with torch.no_grad():
                alone = model(ids[r : r + 1, :n])
            torch.testing.assert_close(alone[0], expected[f"{batch}.last_hidden_state"][r, :n],
                                       atol=1e-5, rtol=1e-5)


def test_alibi_slopes_follow_the_official_schedule():
    d, cfg, _, expected = _fixture("dnabert2-tiny-h12")
    assert torch.equal(torch.tensor(alibi_slopes(12), dtype=torch.float32),
                       expected["alibi_slopes"])
    assert alibi_slopes(12)[8:] == pytest.approx([2**-0.5, 2**-1.5, 2**-2.5, 2**-3.5])
    assert alibi_slopes(4) == [0.25, 0.0625, 0.015625, 0.00390625]
    assert torch.equal(torch.tensor(alibi_slopes(4), dtype=torch.float32),
                       _fixture("dnabert2-tiny")[3]["alibi_slopes"])


def test_dnabert2_checkpoint_with_tied_decoder_as_torch_pickle(tmp_path):
    """A real checkpoint is a torch pickle keeping cls.predictions.decoder.weight: both load."""
    d, cfg, inputs, expected = _fixture("dnabert2-tiny")
    state = load_file(str(d / "model.safetensors"))
    state["cls.predictions.decoder.weight"] = state["bert.embeddings.word_embeddings.weight"]
    torch.save(state, tmp_path / "pytorch_model.bin")
    for name in ("config.json",):
        shutil.copy(d / name, tmp_path / name)
    for name in ("tokenizer.json", "tokenizer_config.json"):
        shutil.copy(packaged_tokenizer_dir("dnabert-2") / name, tmp_path / name)
    assert detect_arch(tmp_path) == "dnabert2"
    backbone = load_backbone("dnabert2", tmp_path)
    b = inputs["b0_padded_3rows"]
    mask = torch.tensor(b["attention_mask"])
    with torch.no_grad():
        hidden = backbone.module.eval()(torch.tensor(b["input_ids"]), mask)
    real = mask.bool()
    torch.testing.assert_close(hidden[real], expected["b0_padded_3rows.last_hidden_state"][real],
                               atol=1e-5, rtol=1e-5)


def test_dnabert2_classifier_on_fixture_saves_official_key_names(tmp_path):
    d = FIXTURES / "dnabert2-tiny"
    model_dir = tmp_path / "m"
    model_dir.mkdir()
    for name in ("config.json", "model.safetensors"):
        shutil.copy(d / name, model_dir / name)
    for name in ("tokenizer.json", "tokenizer_config.json"):
        shutil.copy(packaged_tokenizer_dir("dnabert-2") / name, model_dir / name)
    clf = build_classifier(model_dir, LABELS)
    save_classifier(clf, tmp_path / "clf")
    saved = load_file(str(tmp_path / "clf" / "model.safetensors"))
    original = {k: v for k, v in load_file(str(d / "model.safetensors")).items()
                if k.startswith("bert.")}
    assert sorted(saved) == sorted(original)
    assert all(torch.equal(saved[k], original[k]) for k in original)
    # The official config, key for key, plus the Hugging Face label fields of the label map.
    labels = {"id2label": {"0": "a", "1": "b", "2": "c"}, "label2id": {"a": 0, "b": 1, "c": 2},
              "num_labels": 3}
    assert json.loads((tmp_path / "clf" / "config.json").read_text()) == {
        **json.loads((d / "config.json").read_text()), **labels}


# -- tokenizers --------------------------------------------------------------------------------


SHA256 = {
    "dnabert-2/tokenizer.json": "5d178e8ce2ba55df97fff197f4b30f40133b95d7096be398c2df6b526c5d8cd3",
    "dnabert-2/tokenizer_config.json":
        "f9d18c81f4dd9dd7db02e9f27cc1203228147d890bfce9167c3af6465ff5b769",
    "metagene-1/tokenizer.json":
        "3fd754434de0e3aa76ad233e1bcbe1562a21a91a4e13dda947fd7dce401f0b88",
}


@pytest.mark.parametrize("name", sorted(SHA256))
def test_packaged_tokenizer_files_are_the_real_ones(name):
    family, file = name.split("/")
    data = (packaged_tokenizer_dir(family) / file).read_bytes()
    assert hashlib.sha256(data).hexdigest() == SHA256[name]
    assert data == (FIXTURES / "tokenizers" / family / file).read_bytes()


def _hf_collator(family: str) -> HFCollator:
    from readtax.models.tokenizers import hf_collator

    return hf_collator(packaged_tokenizer_dir(family), None)


@pytest.mark.parametrize("family", ["dnabert-2", "metagene-1"])
def test_real_tokenizers_reproduce_expected_ids(family):
    expected = json.loads((FIXTURES / "tokenizers" / family / "expected_ids.json").read_text())
    col = _hf_collator(family)
    names = list(expected["reads"])
    reads = [expected["reads"][n] for n in names]
    with_special = col.encode_ids(reads)
    without = col.encode_ids(reads, add_special_tokens=False)
    for i, n in enumerate(names):
        assert with_special[i] == expected["per_read"][n]["ids_with_special"], n
        assert without[i] == expected["per_read"][n]["ids_without_special"], n


def test_metagene_special_tokens_map_is_the_pretraining_repos_copy():
    """Byte-identical to metagene-ai/metagene-pretrain train/minbpe/mgfm-1024/ (SOURCE.md)."""
    data = (packaged_tokenizer_dir("metagene-1") / "special_tokens_map.json").read_bytes()
    assert len(data) == 149
    assert hashlib.sha256(data).hexdigest() == \
        "1b14c2afb9dc384a15aa4bbd06158a2728066ab111264f8bee56db3197b02d83"


def test_metagene_special_tokens_and_padding():
    col = _hf_collator("metagene-1")
    assert col.pad_id == 0
    cfg = json.loads((packaged_tokenizer_dir("metagene-1") / "tokenizer_config.json").read_text())
    ids = {t: col.tokenizer.token_to_id(cfg[f"{t}_token"])
           for t in ("pad", "unk", "sep", "bos", "eos", "mask")}
    assert ids == {"pad": 0, "unk": 1, "sep": 2, "bos": 3, "eos": 4, "mask": 5}
    out = col(SeqBatch.from_strings(["ACGTACGTAC", "acgtACGTACGTACGTAAAAT"]))
    ids = out["input_ids"]
    assert ids[0, 0] != 3  # no BOS
    lengths = out["attention_mask"].sum(1)
    assert [int(ids[r, lengths[r] - 1]) for r in range(2)] == [4, 4]  # EOS last
    assert int(ids[0, -1]) == 0 and int(out["attention_mask"][0, -1]) == 0
    # lower case reaches the tokenizer upper-cased (SeqBatch), so no [UNK]
    assert 1 not in ids[1, : lengths[1]].tolist()


def test_dnabert2_collator_matches_padded_batch():
    expected = json.loads((FIXTURES / "tokenizers" / "dnabert-2" / "expected_ids.json").read_text())
    pb = expected["padded_batch"]["AutoTokenizer.from_pretrained(folder)"]
    reads = [expected["reads"][n] for n in pb["reads"]]
    out = _hf_collator("dnabert-2")(SeqBatch.from_strings(reads))
    assert out["input_ids"].tolist() == pb["input_ids"]
    assert out["attention_mask"].tolist() == pb["attention_mask"]


def test_dnabert2_batches_are_padded_to_a_multiple_of_8(standins):
    reads = _reads()
    coll = load_backbone("dnabert2", standins["dnabert2"]).collator
    plain = _hf_collator("dnabert-2")(reads)
    out = coll(reads)
    w = plain["input_ids"].shape[1]
    assert w % 8 and out["input_ids"].shape[1] == -(-w // 8) * 8
    assert torch.equal(out["input_ids"][:, :w], plain["input_ids"])
    assert torch.equal(out["attention_mask"][:, :w], plain["attention_mask"])
    assert not out["attention_mask"][:, w:].any()
    assert (out["input_ids"][:, w:] == coll.pad_id).all()
    coll.max_length = w + 1  # never wider than the model limit (unless a read needs it)
    assert coll(reads)["input_ids"].shape[1] == w + 1


@pytest.mark.parametrize("k", [3, 6])
def test_kmer_collator_equals_bert_wordpiece_on_spaced_kmers(k, tmp_path):
    from transformers import AutoTokenizer

    init_model("dnabert", "tiny", tmp_path / "m", k=k)
    vocab = (tmp_path / "m" / "vocab.txt").read_text().splitlines()
    assert vocab == dnabert_vocab(k)
    assert len(vocab) == 4**k + 5 and vocab[:5] == ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
    assert vocab[5:9] == ["A" * k, "A" * (k - 1) + "T", "A" * (k - 1) + "C", "A" * (k - 1) + "G"]
    ref = AutoTokenizer.from_pretrained(str(tmp_path / "m"))  # what the model dir declares
    reads = ["ACGTACGTTTGACA", "ACGNTTGACCATGA", "AC", "", "GATTACA" * 5]
    out = KmerCollator(vocab, k, max_length=20)(SeqBatch.from_strings(reads))
    for r, read in enumerate(reads):
        kmers = " ".join(read[i : i + k] for i in range(len(read) - k + 1))
        want = ref(kmers, truncation=True, max_length=20)["input_ids"]
        n = int(out["attention_mask"][r].sum())
        assert out["input_ids"][r, :n].tolist() == want, read
        assert out["input_ids"][r, n:].tolist() == [0] * (out["input_ids"].shape[1] - n)


def test_base_collator_codes_labels_and_truncation():
    b = SeqBatch.from_strings(["ACGTN", "TT", ""], np.array([2, -1, 0]))
    out = BaseCollator(max_length=4)(b)
    assert out["input_ids"].tolist() == [[1, 2, 3, 4], [4, 4, 0, 0], [0, 0, 0, 0]]
    assert out["attention_mask"].tolist() == [[1, 1, 1, 1], [1, 1, 0, 0], [0, 0, 0, 0]]
    assert out["labels"].tolist() == [2, -100, 0]
    assert all(v.dtype == torch.int64 for v in out.values())


# -- every family ------------------------------------------------------------------------------


@pytest.mark.parametrize("arch", ARCHS)
def test_family_builds_trains_saves_and_reloads(arch, standins, tmp_path):
    d = standins[arch]
    assert detect_arch(d) == arch
    model = build_classifier(d, LABELS, options=ModelOptions(dropout=0.0), seed=3)
    batch = _reads()
    inputs = model.collator(batch)
    assert inputs["labels"].tolist() == [0, 1, 2, -100, 0, 1]
    shipped = pickle.loads(pickle.dumps(model.collator))  # DataLoader workers under spawn
    assert all(torch.equal(v, shipped(batch)[k]) for k, v in inputs.items())
    model.train()
    out = model(**inputs)
    assert out.logits.shape == (6, 3) and torch.isfinite(out.loss)
    out.loss.backward()
    trained = [p for p in model.parameters() if p.requires_grad]
    assert all(p.grad is not None for p in trained)
    assert model.head.weight.grad.abs().sum() > 0
    model.eval()
    with torch.no_grad():
        before = model(**inputs).logits
    save_classifier(model, tmp_path / "run" / "model")
    assert resolve_model_dir(tmp_path / "run") == tmp_path / "run" / "model"
    # Hugging Face conventions: label fields in config.json, a model card in README.md.
    cfg = json.loads((tmp_path / "run" / "model" / "config.json").read_text())
    names = list(LABELS.names)
    assert cfg["id2label"] == {str(i): n for i, n in enumerate(names)}
    assert cfg["label2id"] == {n: i for i, n in enumerate(names)} and cfg["num_labels"] == 3
    card = (tmp_path / "run" / "model" / "README.md").read_text()
    assert card.startswith("---\nlibrary_name: readtax\n")
    h = model.hidden_size
    for want in (f"- family: `{arch}`", "- pooling: `mean`", f"`Linear({h}, 3)`",
                 "- labels: 3 ", "Classes: " + ", ".join(names), "## Training data",
                 "## Final validation metrics"):
        assert want in card, want
    assert detect_arch(tmp_path / "run" / "model") == arch
    again = load_classifier(tmp_path / "run")
    assert again.label_map == LABELS and again.arch == arch
    with torch.no_grad():
        after = again(**again.collator(batch)).logits
    torch.testing.assert_close(after, before, atol=0, rtol=0)
    # same seed, same head
    twin = build_classifier(d, LABELS, options=ModelOptions(dropout=0.0), seed=3)
    assert torch.equal(twin.head.weight, build_classifier(d, LABELS, seed=3).head.weight)


@pytest.mark.parametrize("arch", ["kmer-cnn", "dnabert2", "dnabert"])
def test_read_alone_equals_read_in_padded_batch(arch, standins):
    model = build_classifier(standins[arch], LABELS).eval()
    batch = _reads()
    with torch.no_grad():
        together = model(**model.collator(batch)).logits
        for pooling in ("mean",):
            assert model.options.pooling == pooling
        for r in range(len(batch)):
            alone = model(**model.collator(batch.take(np.array([r])))).logits
            torch.testing.assert_close(alone[0], together[r], atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("pooling", ["cls", "max"])
def test_other_poolings(pooling, standins, tmp_path):
    model = build_classifier(standins["dnabert2"], LABELS,
                             options=ModelOptions(pooling=pooling, dropout=0.0)).eval()
    batch = _reads(3)
    with torch.no_grad():
        inputs = model.collator(batch)
        hidden = model.backbone(inputs["input_ids"], inputs["attention_mask"])
        logits = model(**inputs).logits
    r = 2
    n = int(inputs["attention_mask"][r].sum())
    pooled = hidden[r, 0] if pooling == "cls" else hidden[r, :n].amax(0)
    torch.testing.assert_close(logits[r], model.head(pooled))
    save_classifier(model, tmp_path / "m")
    assert load_classifier(tmp_path / "m").options.pooling == pooling


def test_lora_trainable_parameters_match_rank(standins, tmp_path):
    model = build_classifier(standins["metagene"], LABELS)  # LoRA on by default (paper)
    assert model.options.lora and model.options.lora_targets == ["q_proj", "k_proj", "v_proj",
                                                                   "o_proj"]
    cfg = model.backbone_config
    h, layers = cfg["hidden_size"], cfg["num_hidden_layers"]
    kv = h // cfg["num_attention_heads"] * cfg["num_key_value_heads"]
    per_layer = sum(8 * (i + o) for i, o in ((h, h), (h, kv), (h, kv), (h, h)))
    head = h * 3 + 3
    assert sum(p.numel() for p in trainable_state_dict(model).values()) == layers * per_layer + head
    for r in (4, 16):
        m = build_classifier(standins["dnabert2"], LABELS,
                             options=ModelOptions(lora=True, lora_r=r))
        c = m.backbone_config
        h, n = c["hidden_size"], c["num_hidden_layers"]
        expect = n * (r * (h + 3 * h) + r * (h + h)) + h * 3 + 3  # Wqkv and attention.output.dense
        assert sum(p.numel() for p in m.parameters() if p.requires_grad) == expect
    # adapter-only checkpoint state round trip
    state = {k: v.clone() + 1 for k, v in trainable_state_dict(model).items()}
    load_trainable_state_dict(model, state)
    assert all(torch.equal(trainable_state_dict(model)[k], v) for k, v in state.items())
    save_classifier(model, tmp_path / "m")
    assert sorted(p.name for p in (tmp_path / "m" / "adapter").iterdir()) == [
        "adapter_config.json", "adapter_model.safetensors"]
    assert not (tmp_path / "m" / "adapter.safetensors").exists()
    reloaded = load_classifier(tmp_path / "m")
    assert all(torch.equal(trainable_state_dict(reloaded)[k], v) for k, v in state.items())
    # Plain PEFT loads the adapter onto the backbone and computes the same hidden states.
    from peft import PeftModel
    from transformers import AutoModel

    inputs = model.collator(_reads(4))
    ids, mask = inputs["input_ids"], inputs["attention_mask"]
    peft_model = PeftModel.from_pretrained(AutoModel.from_pretrained(tmp_path / "m"),
                                           tmp_path / "m" / "adapter").eval()
    model.eval()
    with torch.no_grad():
        ours = model.backbone(ids, mask)
        theirs = peft_model(input_ids=ids, attention_mask=mask).last_hidden_state
        plain = AutoModel.from_pretrained(tmp_path / "m")(input_ids=ids,
                                                          attention_mask=mask).last_hidden_state
    torch.testing.assert_close(theirs, ours)
    assert not torch.allclose(plain, ours)  # the adapter (weights + 1) does change the output
    # A classifier saved before the PEFT layout (adapter.safetensors, readtax's key names).
    old = tmp_path / "old"
    shutil.copytree(tmp_path / "m", old)
    shutil.rmtree(old / "adapter")
    save_file({k: v.contiguous() for k, v in model.backbone.state_dict().items() if "lora_" in k},
              str(old / "adapter.safetensors"))
    again = load_classifier(old)
    assert all(torch.equal(trainable_state_dict(again)[k], v) for k, v in state.items())


def _lora_with_nonzero_adapters(path: Path) -> torch.nn.Module:
    model = build_classifier(path, LABELS, options=ModelOptions(lora=True, dropout=0.0))
    gen = torch.Generator().manual_seed(5)
    state = {k: torch.randn(v.shape, generator=gen) * 0.1
             for k, v in trainable_state_dict(model).items()}
    load_trainable_state_dict(model, state)  # lora_B starts at 0: make the adapters matter
    return model.eval()


def test_lora_layers_do_not_cast_inputs_and_dropout_defaults_to_0(standins):
    model = build_classifier(standins["metagene"], LABELS)
    flags = [m.cast_input_dtype_enabled for m in model.modules()
             if hasattr(m, "cast_input_dtype_enabled")]
    assert len(flags) == 4 * model.backbone_config["num_hidden_layers"] and not any(flags)
    assert model.options.lora_dropout == 0.0
    assert not any(isinstance(m, torch.nn.Dropout) for n, m in model.named_modules()
                   if "lora_dropout" in n)


@pytest.mark.parametrize("arch", ["metagene", "dnabert2"])
def test_merged_lora_outputs_equal_unmerged(standins, tmp_path, arch):
    model = _lora_with_nonzero_adapters(standins[arch])
    inputs = model.collator(_reads())
    with torch.no_grad():
        before = model(inputs["input_ids"], inputs["attention_mask"]).logits
        save_classifier(model, tmp_path / "m")
        merged = merge_lora(model)
        after = merged(inputs["input_ids"], inputs["attention_mask"]).logits
        assert merged.lora_merged and not any("lora_" in n for n, _ in merged.named_parameters())
        loaded = load_classifier(tmp_path / "m", merge_adapters=True)
        unmerged = load_classifier(tmp_path / "m")
        from_disk = loaded(inputs["input_ids"], inputs["attention_mask"]).logits
        plain = unmerged(inputs["input_ids"], inputs["attention_mask"]).logits
    assert torch.allclose(before, plain, atol=1e-6)
    assert not torch.allclose(before, build_classifier(  # the adapters change the outputs
        standins[arch], LABELS, options=ModelOptions(lora=True, dropout=0.0)).eval()(
        inputs["input_ids"], inputs["attention_mask"]).logits.detach(), atol=1e-4)
    torch.testing.assert_close(after, before, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(from_disk, plain, atol=1e-5, rtol=1e-5)
    assert loaded.lora_merged and not unmerged.lora_merged
    with pytest.raises(ModelError, match="merged"):
        save_classifier(loaded, tmp_path / "again")


def test_activation_estimate_follows_the_llama_shapes(standins):
    model = build_classifier(standins["metagene"], LABELS)
    c = model.backbone_config
    per_token = c["num_hidden_layers"] * (10 * c["hidden_size"] + 3 * c["intermediate_size"])
    assert activation_bytes(model, 64, 45) == 64 * 45 * per_token * 2
    assert activation_bytes(model, 64, 45, elem_bytes=4) == 2 * activation_bytes(model, 64, 45)
    # METAGENE-1's shapes: 32 layers, hidden 4096, intermediate 11008 -> ~14 GB at 64 x 45 tokens
    model.backbone_config = {"hidden_size": 4096, "intermediate_size": 11008,
                             "num_hidden_layers": 32}
    assert 13e9 < activation_bytes(model, 64, 45) < 15e9


def test_frozen_backbone_and_gradient_checkpointing(standins):
    frozen = build_classifier(standins["dnabert2"], LABELS,
                              options=ModelOptions(freeze_backbone=True))
    assert {n for n, p in frozen.named_parameters() if p.requires_grad} == {"head.weight",
                                                                          "head.bias"}
    inputs = frozen.collator(_reads())
    plain = build_classifier(standins["dnabert2"], LABELS, options=ModelOptions(dropout=0.0))
    ckpt = build_classifier(standins["dnabert2"], LABELS,
                            options=ModelOptions(dropout=0.0, gradient_checkpointing=True))
    plain.eval()
    ckpt.eval()
    ckpt.training = True  # checkpointing only acts in training mode; keep dropout off
    ckpt.backbone.training = True
    a, b = plain(**inputs), ckpt(**inputs)
    a.loss.backward()
    b.loss.backward()
    torch.testing.assert_close(a.logits, b.logits)
    g1 = plain.backbone.embeddings.word_embeddings.weight.grad
    g2 = ckpt.backbone.embeddings.word_embeddings.weight.grad
    torch.testing.assert_close(g1, g2)


def test_bfloat16_backbone(standins):
    model = build_classifier(standins["kmer-cnn"], LABELS, options=ModelOptions(dtype="bfloat16"))
    assert model.backbone.embed.weight.dtype == torch.bfloat16
    assert model.head.weight.dtype == torch.float32
    out = model(**model.collator(_reads()))
    assert out.logits.dtype == torch.float32 and torch.isfinite(out.loss)


def test_kmer_cnn_learns_species_quickly(standins):
    rng = np.random.default_rng(5)
    genomes = [rng.choice(list("ACGT"), size=4000) for _ in range(3)]

    def sample(n):
        cls = rng.integers(0, 3, n)
        starts = rng.integers(0, 4000 - 100, n)
        seqs = ["".join(genomes[c][s : s + 100]) for c, s in zip(cls, starts)]
        return SeqBatch.from_strings(seqs, cls)

    torch.manual_seed(0)
    model = build_classifier(standins["kmer-cnn"], LABELS)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-2)
    for _ in range(60):
        out = model(**model.collator(sample(64)))
        opt.zero_grad()
        out.loss.backward()
        opt.step()
    model.eval()
    test = model.collator(sample(300))
    with torch.no_grad():
        acc = (model(**test).logits.argmax(1) == test["labels"]).float().mean().item()
    assert acc > 0.9


# -- init-model, detection, bad input ----------------------------------------------------------


def test_init_model_cli_and_determinism(tmp_path, capsys):
    assert main(["init-model", "--arch", "dnabert2", "--size", "tiny", "-o",
                 str(tmp_path / "a"), "--seed", "5"]) == 0
    init_model("dnabert2", "tiny", tmp_path / "b", seed=5)
    for name in ("config.json", "model.safetensors", "tokenizer.json"):
        assert (tmp_path / "a" / name).read_bytes() == (tmp_path / "b" / name).read_bytes()
    keys = set(load_file(str(tmp_path / "a" / "model.safetensors")))
    official = {line.split("\t")[0] for line in
                (FIXTURES / "dnabert2-tiny" / "keys.txt").read_text().splitlines()
                if line and not line.startswith("#")}
    assert keys == official  # same file layout as the official checkpoint
    cfg = json.loads((tmp_path / "a" / "config.json").read_text())
    real = json.loads((FIXTURES / "dnabert2-tiny" / "config.json").read_text())
    assert list(cfg) == list(real)
    assert main(["init-model", "--arch", "dnabert2", "-o", str(tmp_path / "a")]) == 2
    assert "exists" in capsys.readouterr().err
    assert main(["init-model", "--arch", "dnabert", "--k", "8", "-o", str(tmp_path / "c")]) == 2


def test_full_configs_and_parameter_counts():
    meta = model_config("metagene", "full")
    assert (meta["num_hidden_layers"], meta["hidden_size"], meta["vocab_size"],
            meta["max_position_embeddings"], meta["intermediate_size"]) == (32, 4096, 1024, 512,
                                                                          11008)
    n = count_parameters("metagene", "full")
    assert 6.4e9 < n < 6.6e9
    db2 = model_config("dnabert2", "full")
    assert {k: db2[k] for k in ("hidden_size", "num_hidden_layers", "num_attention_heads",
                                 "intermediate_size", "vocab_size")} == {
        "hidden_size": 768, "num_hidden_layers": 12, "num_attention_heads": 12,
        "intermediate_size": 3072, "vocab_size": 4096}
    assert 116e6 < count_parameters("dnabert2", "full") < 119e6
    assert model_config("dnabert", "full", k=4)["vocab_size"] == 4**4 + 5


def test_detect_arch_of_fixtures_and_configs(tmp_path):
    for name in DNABERT2_FIXTURES:
        assert detect_arch(FIXTURES / name) == "dnabert2"
    cases = {
        "metagene": {"model_type": "llama", "vocab_size": 1024},
        "auto": {"model_type": "llama", "vocab_size": 32000},
        "dnabert": {"model_type": "bert", "vocab_size": 4**5 + 5},
    }
    for arch, cfg in cases.items():
        (tmp_path / arch).mkdir()
        (tmp_path / arch / "config.json").write_text(json.dumps(cfg))
        assert detect_arch(tmp_path / arch) == arch
    (tmp_path / "bert4096" / "").mkdir()
    (tmp_path / "bert4096" / "config.json").write_text('{"model_type": "bert", "vocab_size": 4096}')
    assert detect_arch(tmp_path / "bert4096") == "auto"


def test_bad_model_directories(tmp_path, standins):
    with pytest.raises(ModelError, match="missing config.json"):
        detect_arch(tmp_path)
    with pytest.raises(ModelError, match="does not exist"):
        build_classifier(tmp_path / "nowhere", LABELS)
    (tmp_path / "odd").mkdir()
    (tmp_path / "odd" / "config.json").write_text('{"model_type": "no-such-model"}')
    with pytest.raises(ModelError, match="unknown model family"):
        detect_arch(tmp_path / "odd")
    with pytest.raises(ModelError, match="unknown model family"):
        build_classifier(standins["kmer-cnn"], LABELS, arch="gpt5")
    notok = tmp_path / "notok"
    shutil.copytree(standins["dnabert2"], notok)
    (notok / "tokenizer.json").unlink()
    with pytest.raises(ModelError, match="tokenizer.json"):
        build_classifier(notok, LABELS)
    noweights = tmp_path / "noweights"
    shutil.copytree(standins["kmer-cnn"], noweights)
    (noweights / "model.safetensors").unlink()
    with pytest.raises(ModelError, match="missing weights"):
        build_classifier(noweights, LABELS)
    with pytest.raises(ModelError, match="LoRA target module.*nope"):
        build_classifier(standins["dnabert2"], LABELS,
                         options=ModelOptions(lora=True, lora_targets=["Wqkv", "nope"]))
    with pytest.raises(UsageError, match="lora_targets"):
        build_classifier(standins["kmer-cnn"], LABELS, options=ModelOptions(lora=True))
    with pytest.raises(ModelError, match="not a readtax run or model directory"):
        load_classifier(standins["kmer-cnn"])
    model = build_classifier(standins["kmer-cnn"], LABELS)
    with pytest.raises(UsageError, match="not a saved readtax model"):
        save_classifier(model, standins["dnabert2"])
    other = LabelMap.from_ids([3, 7, 12], names=["a", "b", "d"], tax_ids=[30, 70, 120])
    with pytest.raises(ModelError, match="class 2 is 11 'c' in the model but 12 'd'"):
        model.check_label_map(other, "data.store")
    model.check_label_map(LabelMap.from_ids([3, 7, 11], ["a", "b", "c"], [30, 70, 110]))
    bad = tmp_path / "badweights"
    shutil.copytree(standins["dnabert2"], bad)
    state = load_file(str(bad / "model.safetensors"))
    state.pop("bert.encoder.layer.0.mlp.wo.bias")
    save_file(state, str(bad / "model.safetensors"))
    with pytest.raises(ModelError, match="missing.*mlp.wo.bias"):
        build_classifier(bad, LABELS)


def test_model_options_validation_names_bad_values():
    with pytest.raises(UsageError) as err:
        ModelOptions(pooling="median", dtype="float8", lora_r=0, max_length=0)
    msg = str(err.value)
    for part in ("pooling 'median'", "mean, cls, max", "dtype 'float8'", "lora_r 0",
                 "max_length 0"):
        assert part in msg
    with pytest.raises(UsageError, match="unknown option.*poolin"):
        ModelOptions.from_dict({"poolin": "mean"})
    assert ModelOptions(lora_targets="q_proj, v_proj").lora_targets == ["q_proj", "v_proj"]


# -- kmer-cnn: hashed long k-mers ------------------------------------------------------------


def _reference_buckets(read: str, k: int, buckets: int) -> list[int]:
    """Plain-Python statement of the hash: canonical k-mer code, folded universal hash."""
    from readtax.models import kmer_cnn as kc

    code = {"A": 0, "C": 1, "G": 2, "T": 3}
    out = []
    for i in range(len(read)):
        w = read[i : i + k]
        if len(w) < k or any(c not in code for c in w):
            out.append(0)
            continue
        fwd = 0
        for c in w:
            fwd = fwd * 4 + code[c]
        rev = 0
        for c in reversed(w):
            rev = rev * 4 + 3 - code[c]
        x = min(fwd, rev)
        h = ((x >> 31) * kc.HASH_A1 + (x & kc.HASH_P) * kc.HASH_A2 + kc.HASH_B) % kc.HASH_P
        out.append(h % buckets + 1)
    return out


@pytest.mark.parametrize("k", [5, 12, 31])
def test_kmer_cnn_hashed_ids_match_reference(k):
    from readtax.models.kmer_cnn import KmerCnn, make_config
    from readtax.models.tokenizers import BaseCollator

    cfg = make_config("tiny", hidden_size=36, hash_k=k, hash_buckets=1000, hash_dim=4)
    model = KmerCnn(cfg)
    rng = np.random.default_rng(k)
    reads = ["".join(rng.choice(list("ACGT"), size=60)) for _ in range(3)]
    reads[1] = reads[1][:20] + "N" + reads[1][21:]
    batch = SeqBatch.from_strings(reads, [0, 1, 2])
    ids = BaseCollator(None)(batch)["input_ids"]
    got = model.hashed_ids(ids).tolist()
    assert got == [_reference_buckets(r, k, 1000) for r in reads]
    assert got[1][20] == 0 and got[1][20 - k + 1] == 0  # windows holding the N


def test_kmer_cnn_base_is_strand_blind_and_saves(tmp_path):
    """The default (base) model: a read and its reverse complement give the same hidden
    states' mean; the hashed table survives a save and reload bit for bit."""
    from readtax.models import init_model
    from readtax.models.init import default_size

    assert default_size("kmer-cnn") == "base" and default_size("dnabert2") == "tiny"
    d = init_model("kmer-cnn", "base", tmp_path / "base", seed=3)
    cfg = json.loads((d / "config.json").read_text())
    assert (cfg["hash_k"], cfg["hash_buckets"], cfg["hash_dim"]) == (12, 1 << 20, 8)
    bb = load_backbone("kmer-cnn", d)
    comp = str.maketrans("ACGTN", "TGCAN")
    read = "ACGTTGCAAGGCTTACGATCGATCGGGCTAAATCGNACGTACGTTAGCCGATAGCTAGCTAGGATC"
    batch = SeqBatch.from_strings([read, read.translate(comp)[::-1]], [0, 0])
    inputs = bb.collator(batch)
    with torch.no_grad():
        h = bb.module(inputs["input_ids"], inputs["attention_mask"])
    assert h.shape[-1] == 40
    torch.testing.assert_close(h[0].mean(0), h[1].mean(0))
    again = load_backbone("kmer-cnn", d)
    assert torch.equal(again.module.hash_embed.weight, bb.module.hash_embed.weight)


def test_kmer_cnn_hash_config_errors():
    from readtax.models.kmer_cnn import check_config, make_config

    with pytest.raises(ModelError, match="hash_k must be 0 .off. or 1..31, got 40"):
        check_config(make_config("tiny", hidden_size=40, hash_k=40, hash_buckets=8, hash_dim=8))
    with pytest.raises(ModelError, match="needs hash_buckets >= 1 and hash_dim >= 1"):
        check_config(make_config("tiny", hash_k=12, hash_buckets=0, hash_dim=0))
    with pytest.raises(ModelError, match="hidden_size == embed_dim .. hash_dim with hash_k.: 40, "
                                         "got 32"):
        check_config(make_config("tiny", hash_k=12, hash_buckets=8, hash_dim=8))
    # A config written before the hashed table (no hash keys) is still valid.
    old = {k: v for k, v in make_config("tiny").items() if not k.startswith("hash_")}
    assert check_config(old) is old
