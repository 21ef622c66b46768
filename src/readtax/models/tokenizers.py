"""Collators: a whole :class:`~readtax.batch.SeqBatch` to model tensors in one call.

Three kinds, chosen by the model family:

* :class:`HFCollator` — a Hugging Face *fast* tokenizer (``tokenizer.json``) called once per batch
  (``encode_batch``), truncated and right-padded. Used by METAGENE-1, DNABERT-2 and generic models.
* :class:`KmerCollator` — DNABERT's overlapping k-mers computed with numpy over the padded batch
  (no string building, no WordPiece): the ids are those ``BertTokenizer`` gives for the
  space-separated k-mers with the vocabulary file's own order.
* :class:`BaseCollator` — one token per base (``A C G T N`` -> 1..5, pad 0) for the k-mer CNN.

Every collator returns int64 ``input_ids``, ``attention_mask`` and ``labels`` (-100 where the
read has no class, so the loss ignores it).
"""

from __future__ import annotations

import json
from importlib import resources
from itertools import product
from pathlib import Path

import numpy as np

from ..batch import SeqBatch
from ..errors import ModelError

# Special tokens of DNABERT (k-mer) vocabularies, in the original order (ids 0..4).
DNABERT_SPECIALS = ("[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]")
# Order of bases in the original DNABERT vocab.txt files (AAAAAA, AAAAAT, AAAAAC, AAAAAG, ...).
DNABERT_BASE_ORDER = "ATCG"

# Base codes of the k-mer CNN: pad 0, A C G T 1..4, anything else (N) 5.
BASE_CODES = np.full(256, 5, dtype=np.uint8)
for _i, _c in enumerate(b"ACGT"):
    BASE_CODES[_c] = _i + 1
    BASE_CODES[_c + 32] = _i + 1

# 2-bit codes A0 C1 G2 T3, other 4 (lower case too: reads are upper-cased by the loaders anyway).
_CODE2 = np.full(256, 4, dtype=np.int64)
for _i, _c in enumerate(b"ACGT"):
    _CODE2[_c] = _i
    _CODE2[_c + 32] = _i


def packaged_tokenizer_dir(name: str) -> Path:
    """Directory of a tokenizer shipped as package data (``dnabert-2`` or ``metagene-1``)."""
    return Path(str(resources.files("readtax") / "data" / "tokenizers" / name))


def _labels(batch: SeqBatch):
    import torch

    lab = np.asarray(batch.labels, dtype=np.int64)
    return torch.from_numpy(np.where(lab < 0, -100, lab))


def _tensors(ids: np.ndarray, mask: np.ndarray, batch: SeqBatch) -> dict:
    import torch

    return {
        "input_ids": torch.from_numpy(np.ascontiguousarray(ids, dtype=np.int64)),
        "attention_mask": torch.from_numpy(np.ascontiguousarray(mask, dtype=np.int64)),
        "labels": _labels(batch),
    }


class BaseCollator:
    """One token per base: A C G T -> 1..4, N (any other letter) -> 5, padding 0."""

    def __init__(self, max_length: int | None = None) -> None:
        self.max_length = max_length

    def encode(self, batch: SeqBatch) -> tuple[np.ndarray, np.ndarray]:
        ids, lengths = batch.padded(self.max_length, pad=0, lut=BASE_CODES)
        width = max(ids.shape[1], 1)  # keep one column for a batch of empty reads
        if ids.shape[1] == 0:
            ids = np.zeros((len(batch), 1), dtype=np.uint8)
        mask = np.arange(width)[None, :] < lengths[:, None]
        return ids, mask

    def __call__(self, batch: SeqBatch) -> dict:
        ids, mask = self.encode(batch)
        return _tensors(ids, mask, batch)


def dnabert_vocab(k: int) -> list[str]:
    """The DNABERT k-mer vocabulary: 5 special tokens, then all 4^k k-mers in the original order."""
    if not 3 <= k <= 6:
        raise ModelError(f"DNABERT k-mer size must be 3..6, got {k}")
    return list(DNABERT_SPECIALS) + ["".join(p) for p in product(DNABERT_BASE_ORDER, repeat=k)]


def read_vocab(path: Path) -> list[str]:
    if not path.is_file():
        raise ModelError("missing vocabulary file (vocab.txt) of a DNABERT k-mer model", path)
    return path.read_text(encoding="utf-8").splitlines()


def kmer_size_of_vocab(vocab_size: int) -> int | None:
    """k for a DNABERT vocabulary of 4^k + 5 tokens, else None."""
    for k in range(3, 7):
        if vocab_size == 4**k + 5:
            return k
    return None


class KmerCollator:
    """DNABERT tokenisation: ``[CLS]`` + overlapping k-mers (stride 1) + ``[SEP]``, vectorised.

    A k-mer holding a base other than ACGT is ``[UNK]`` (WordPiece finds no piece for it either).
    ``max_length`` counts tokens including ``[CLS]`` and ``[SEP]``.
    """

    def __init__(self, vocab: list[str], k: int, max_length: int | None = 512) -> None:
        index = {tok: i for i, tok in enumerate(vocab)}
        try:
            self.pad, self.unk, self.cls, self.sep = (index[t] for t in DNABERT_SPECIALS[:4])
        except KeyError as exc:
            raise ModelError(f"DNABERT vocabulary lacks the special token {exc.args[0]}") from None
        # LUT: base-4 code of a k-mer (A0 C1 G2 T3, first base most significant) -> vocab id.
        lut = np.full(4**k, self.unk, dtype=np.int64)
        for km in product("ACGT", repeat=k):
            s = "".join(km)
            if s in index:
                code = 0
                for ch in s:
                    code = code * 4 + "ACGT".index(ch)
                lut[code] = index[s]
        self.lut = lut
        self.k = k
        if max_length is not None and max_length < 2:
            raise ModelError(f"max_length must leave room for [CLS] and [SEP], got {max_length}")
        self.max_length = max_length

    def encode(self, batch: SeqBatch) -> tuple[np.ndarray, np.ndarray]:
        k = self.k
        lengths = batch.lengths
        n_kmers = np.maximum(lengths - k + 1, 0)
        if self.max_length is not None:
            n_kmers = np.minimum(n_kmers, self.max_length - 2)
        # Bases needed: the k-mers kept plus k-1; pad with code 4 (invalid).
        need = np.where(n_kmers > 0, n_kmers + k - 1, 0)
        sub = SeqBatch(batch.seq, batch.offsets, batch.labels)
        codes_u8, _ = sub.padded(int(need.max(initial=0)), pad=ord("N"))
        codes = _CODE2[codes_u8]
        width = int(n_kmers.max(initial=0))
        code = np.zeros((len(batch), width), dtype=np.int64)
        bad = np.zeros((len(batch), width), dtype=bool)
        for j in range(k):  # k vectorised passes over the batch, one per k-mer position
            part = codes[:, j : j + width]
            code = code * 4 + np.minimum(part, 3)
            bad |= part > 3
        tok = np.where(bad, self.unk, self.lut[code])
        total = n_kmers + 2
        ids = np.full((len(batch), width + 2), self.pad, dtype=np.int64)
        ids[:, 0] = self.cls
        cols = np.arange(width)[None, :]
        keep = cols < n_kmers[:, None]
        ids[:, 1 : width + 1] = np.where(keep, tok, self.pad)
        ids[np.arange(len(batch)), n_kmers + 1] = self.sep
        mask = np.arange(width + 2)[None, :] < total[:, None]
        return ids, mask

    def __call__(self, batch: SeqBatch) -> dict:
        ids, mask = self.encode(batch)
        return _tensors(ids, mask, batch)


def _token_content(value) -> str | None:
    if isinstance(value, dict):
        return value.get("content")
    return value if isinstance(value, str) else None


def find_pad_id(tokenizer, config: dict) -> int:
    """Pad id from tokenizer_config/special_tokens_map, else a conventional pad token in the vocab."""
    candidates = [_token_content(config.get("pad_token"))]
    candidates += ["[PAD]", "<pad>", "<PAD>", "<|pad|>"]
    for tok in candidates:
        if tok is not None:
            tid = tokenizer.token_to_id(tok)
            if tid is not None:
                return int(tid)
    raise ModelError("the tokenizer has no padding token ([PAD] or <pad>) and its "
                     "tokenizer_config.json names none")


class HFCollator:
    """A Hugging Face fast tokenizer applied to the whole batch (one ``encode_batch`` call).

    ``tokenizer_json`` is the content of ``tokenizer.json``; it is kept as text so the collator
    pickles into DataLoader workers cheaply. ``max_length`` counts tokens including specials.
    """

    def __init__(self, tokenizer_json: str, pad_id: int, max_length: int | None = None,
                 pad_multiple: int = 1) -> None:
        self.tokenizer_json = tokenizer_json
        self.pad_id = int(pad_id)
        self.max_length = max_length
        self.pad_multiple = int(pad_multiple)  # batch width rounded up (tensor-core tiles)
        self._tok = None

    def __getstate__(self) -> dict:
        return {"tokenizer_json": self.tokenizer_json, "pad_id": self.pad_id,
                "max_length": self.max_length, "pad_multiple": self.pad_multiple, "_tok": None}

    @property
    def tokenizer(self):
        if self._tok is None:
            from tokenizers import Tokenizer

            tok = Tokenizer.from_str(self.tokenizer_json)
            tok.no_padding()
            if self.max_length is not None:
                tok.enable_truncation(self.max_length)
            else:
                tok.no_truncation()
            self._tok = tok
        return self._tok

    def encode_ids(self, seqs: list[str], add_special_tokens: bool = True) -> list[list[int]]:
        tok = self.tokenizer
        encode = getattr(tok, "encode_batch_fast", tok.encode_batch)
        return [e.ids for e in encode(seqs, add_special_tokens=add_special_tokens)]

    def encode(self, batch: SeqBatch) -> tuple[np.ndarray, np.ndarray]:
        rows = self.encode_ids(batch.sequences())
        lengths = np.fromiter((len(r) for r in rows), dtype=np.int64, count=len(rows))
        longest = max(int(lengths.max(initial=0)), 1)
        m = self.pad_multiple
        width = -(-longest // m) * m
        if self.max_length is not None:
            width = max(min(width, self.max_length), longest)
        flat = np.fromiter((t for r in rows for t in r), dtype=np.int64, count=int(lengths.sum()))
        ids = np.full((len(rows), width), self.pad_id, dtype=np.int64)
        mask = np.arange(width)[None, :] < lengths[:, None]
        ids[mask] = flat  # row-major fill matches the row-by-row order of ``flat``
        return ids, mask

    def __call__(self, batch: SeqBatch) -> dict:
        ids, mask = self.encode(batch)
        return _tensors(ids, mask, batch)


def read_tokenizer_config(model_dir: Path) -> dict:
    """tokenizer_config.json merged over special_tokens_map.json (either may be absent)."""
    cfg: dict = {}
    for name in ("special_tokens_map.json", "tokenizer_config.json"):
        p = model_dir / name
        if p.is_file():
            try:
                cfg.update(json.loads(p.read_text(encoding="utf-8")))
            except json.JSONDecodeError as exc:
                raise ModelError(f"not valid JSON: {exc}", p) from None
    return cfg


TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json",
                   "vocab.txt", "vocab.json", "merges.txt", "tokenizer.model")


def tokenizer_file_bytes(model_dir: Path) -> dict[str, bytes]:
    """The tokenizer files present in ``model_dir`` (copied verbatim when a classifier is saved)."""
    return {n: (model_dir / n).read_bytes() for n in TOKENIZER_FILES if (model_dir / n).is_file()}


def hf_collator(model_dir: Path, max_length: int | None, *, allow_auto: bool = False,
                pad_multiple: int = 1) -> HFCollator:
    """Collator from ``tokenizer.json`` (or, for generic models, whatever AutoTokenizer reads)."""
    path = model_dir / "tokenizer.json"
    config = read_tokenizer_config(model_dir)
    if path.is_file():
        text = path.read_text(encoding="utf-8")
        from tokenizers import Tokenizer

        try:
            tok = Tokenizer.from_str(text)
        except Exception as exc:  # noqa: BLE001 - the tokenizers library raises bare Exceptions
            raise ModelError(f"cannot read tokenizer: {exc}", path) from None
        return HFCollator(text, find_pad_id(tok, config), max_length, pad_multiple)
    if not allow_auto or not any((model_dir / n).is_file() for n in TOKENIZER_FILES):
        raise ModelError("missing tokenizer file tokenizer.json", model_dir)
    from transformers import AutoTokenizer

    try:
        auto = AutoTokenizer.from_pretrained(str(model_dir), local_files_only=True)
    except Exception as exc:  # noqa: BLE001 - report any loader failure as a bad model dir
        raise ModelError(f"cannot load the tokenizer: {exc}", model_dir) from None
    backend = getattr(auto, "backend_tokenizer", None)
    if backend is None:
        raise ModelError("the tokenizer has no fast (tokenizer.json) form", model_dir)
    pad = auto.pad_token_id
    if pad is None:
        pad = find_pad_id(backend, config)
    return HFCollator(backend.to_str(), pad, max_length)
