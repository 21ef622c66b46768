"""Label schemes (how a read's class is found) and the label map (class index order).

A label scheme turns a batch of headers into class *keys*: integer class ids (``lbl`` scheme,
regex group ``class_id``) or label names (regex group ``label``, TSV). A :class:`LabelMap`
turns keys into class indices ``0..C-1``; -1 marks a key that is not in the map.
"""

from __future__ import annotations

import abc
import csv
import itertools
import os
import re
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from . import _native
from .batch import ReadBatch
from .errors import InputError, LabelError, UsageError

# -- label map ---------------------------------------------------------------------------------


@dataclass
class LabelMap:
    """Class index order: ``class_ids[i]``, ``names[i]``, ``tax_ids[i]`` describe class i."""

    class_ids: np.ndarray
    names: list[str]
    tax_ids: np.ndarray
    _sorted_ids: np.ndarray = field(init=False, repr=False)
    _sorted_pos: np.ndarray = field(init=False, repr=False)
    _by_name: dict[str, int] = field(init=False, repr=False)
    _dense: np.ndarray | None = field(init=False, repr=False)

    def __post_init__(self) -> None:
        self.class_ids = np.asarray(self.class_ids, dtype=np.int64)
        self.tax_ids = np.asarray(self.tax_ids, dtype=np.int64)
        order = np.argsort(self.class_ids, kind="stable")
        self._sorted_ids = self.class_ids[order]
        self._sorted_pos = order
        self._by_name = {n: i for i, n in enumerate(self.names)}
        # Class ids are usually small integers: a direct lookup table (position -1 and the
        # last one hold -1 for ids outside it) beats a binary search per read.
        self._dense = None
        limit = max(1 << 16, 16 * len(self.class_ids))
        if len(self.class_ids) and self.class_ids.min() >= 0 and self.class_ids.max() < limit:
            self._dense = np.full(int(self.class_ids.max()) + 2, -1, np.int64)
            self._dense[self.class_ids] = np.arange(len(self.class_ids))

    def __len__(self) -> int:
        return len(self.class_ids)

    def __eq__(self, other: object) -> bool:
        return (
            isinstance(other, LabelMap)
            and np.array_equal(self.class_ids, other.class_ids)
            and self.names == other.names
            and np.array_equal(self.tax_ids, other.tax_ids)
        )

    @classmethod
    def from_ids(cls, class_ids, names=None, tax_ids=None) -> LabelMap:
        ids = np.asarray(class_ids, dtype=np.int64)
        names = [str(int(i)) for i in ids] if names is None else list(names)
        tax = np.full(len(ids), -1, dtype=np.int64) if tax_ids is None else tax_ids
        return cls(ids, names, tax)

    def index(self, keys: np.ndarray) -> np.ndarray:
        """Class indices of integer class ids or label names; -1 where unknown."""
        keys = np.asarray(keys)
        if keys.dtype.kind in "iu":
            if len(self._sorted_ids) == 0:
                return np.full(len(keys), -1, dtype=np.int64)
            if self._dense is not None:
                top = len(self._dense) - 1  # the table's last entry is -1 (not a class)
                return self._dense[np.clip(keys.astype(np.int64, copy=False), -1, top)]
            pos = np.searchsorted(self._sorted_ids, keys)
            pos = np.minimum(pos, len(self._sorted_ids) - 1)
            hit = self._sorted_ids[pos] == keys
            return np.where(hit, self._sorted_pos[pos], -1)
        get = self._by_name.get
        return np.fromiter((get(str(k), -1) for k in keys), dtype=np.int64, count=len(keys))

    def to_rows(self) -> list[dict]:
        return [
            {"class_id": int(c), "label_name": n, "tax_id": int(t)}
            for c, n, t in zip(self.class_ids, self.names, self.tax_ids)
        ]

    @classmethod
    def from_rows(cls, rows: list[dict]) -> LabelMap:
        return cls(
            np.array([r["class_id"] for r in rows], dtype=np.int64),
            [str(r["label_name"]) for r in rows],
            np.array([r["tax_id"] for r in rows], dtype=np.int64),
        )

    def write_tsv(self, path: str | os.PathLike[str]) -> None:
        from .outputs import atomic_open

        with atomic_open(path) as fh:
            fh.write("class_id\tlabel_name\ttax_id\n")
            for c, n, t in zip(self.class_ids, self.names, self.tax_ids):
                fh.write(f"{int(c)}\t{n}\t{int(t)}\n")


def load_mapping(path: str | os.PathLike[str]) -> LabelMap:
    """Read a mapping TSV ``class_id, label_name, tax_id`` (header line optional).

    Rejects missing columns, non-integer ids and duplicate class ids or names, naming the line.
    """
    path = Path(path)
    if not path.exists():
        raise UsageError(f"{path}: no such mapping file")
    ids: list[int] = []
    names: list[str] = []
    taxa: list[int] = []
    seen_ids: dict[int, int] = {}
    seen_names: dict[str, int] = {}
    with open(path, newline="", encoding="utf-8") as fh:
        for lineno, row in enumerate(csv.reader(fh, delimiter="\t"), start=1):
            if not row or not "".join(row).strip() or row[0].startswith("#"):
                continue
            if lineno == 1 and row[0].strip().lower() in ("class_id", "class", "id"):
                continue
            if len(row) < 3:
                raise InputError(
                    f"expected 3 tab-separated columns (class_id, label_name, tax_id), found {len(row)}",
                    path, line=lineno,
                )
            cid_s, name, tax_s = row[0].strip(), row[1].strip(), row[2].strip()
            try:
                cid = int(cid_s)
            except ValueError:
                raise InputError(f"class_id {cid_s!r} is not an integer", path, line=lineno) from None
            try:
                tax = int(tax_s)
            except ValueError:
                raise InputError(f"tax_id {tax_s!r} is not an integer", path, line=lineno) from None
            if not name:
                raise InputError("empty label_name", path, line=lineno)
            if cid in seen_ids:
                raise InputError(
                    f"duplicate class_id {cid} (first on line {seen_ids[cid]})", path, line=lineno
                )
            if name in seen_names:
                raise InputError(
                    f"duplicate label_name {name!r} (first on line {seen_names[name]})", path, line=lineno
                )
            seen_ids[cid] = lineno
            seen_names[name] = lineno
            ids.append(cid)
            names.append(name)
            taxa.append(tax)
    if not ids:
        raise InputError("mapping has no classes", path)
    return LabelMap(np.array(ids, dtype=np.int64), names, np.array(taxa, dtype=np.int64))


# -- label schemes -----------------------------------------------------------------------------


class LabelScheme(abc.ABC):
    """Base class: ``keys(batch)`` returns one class key per read."""

    numeric = True

    @abc.abstractmethod
    def keys(self, batch: ReadBatch) -> np.ndarray:
        """One class key per read: integer class ids (``numeric``) or label names."""

    def _fail(self, batch: ReadBatch, i: int, what: str) -> None:
        rec = None if batch.first_record < 0 else batch.first_record + i + 1
        raise LabelError(
            f"header {batch.header(i)!r} does not fit the label scheme: {what}",
            batch.source or None,
            record=rec,
        )


class LblScheme(LabelScheme):
    """``lbl|<class_id>|<tax_id>|<field>|<name>/<mate>``; the key is the integer class_id."""

    name = "lbl"
    numeric = True

    def fields(self, batch: ReadBatch, allow_bad: bool = False, need_tax: bool = True):
        """(class_id, tax_id) per read, parsed with whole-batch numpy operations.

        With ``allow_bad`` returns (class_id, tax_id, bad) instead of raising on the first
        header that does not fit.
        """
        n = len(batch)
        if n == 0:
            z = np.zeros(0, np.int64)
            return (z, z, np.zeros(0, bool)) if allow_bad else (z, z)
        cid = np.empty(n, np.int64)
        tax = np.empty(n, np.int64)
        status = np.empty(n, np.uint8)
        _native.lbl_fields(batch.headers, np.ascontiguousarray(batch.header_offsets, np.int64),
                           cid, tax, status)
        if not need_tax:  # a label map already knows the tax ids
            status[status == 3] = 0
            tax.fill(-1)
        if allow_bad:
            bad = status != 0
            cid[bad] = -1
            return cid, tax, bad
        for code, what in ((1, "expected 'lbl|<class_id>|<tax_id>|<field>|<name>'"),
                           (2, "class_id is not a non-negative integer"),
                           (3, "tax_id is not a non-negative integer")):
            hit = np.flatnonzero(status == code)
            if len(hit):
                self._fail(batch, int(hit[0]), what)
        return cid, tax

    def keys(self, batch: ReadBatch) -> np.ndarray:
        return self.fields(batch)[0]


class RegexScheme(LabelScheme):
    """A user regex with a named group ``class_id`` (integer) or ``label`` (a label name)."""

    def __init__(self, pattern: str) -> None:
        try:
            self.regex = re.compile(pattern)
        except re.error as exc:
            raise UsageError(f"label regex {pattern!r}: {exc}") from None
        groups = self.regex.groupindex
        if "class_id" in groups:
            self.group, self.numeric = "class_id", True
        elif "label" in groups:
            self.group, self.numeric = "label", False
        else:
            raise UsageError(
                f"label regex {pattern!r} needs a named group (?P<class_id>...) or (?P<label>...)"
            )
        self.name = f"regex:{pattern}"

    def keys(self, batch: ReadBatch) -> np.ndarray:
        text = batch.headers.tobytes().decode("utf-8", "replace")
        off = batch.header_offsets
        out = []
        search = self.regex.search
        for i in range(len(batch)):
            m = search(text, int(off[i]), int(off[i + 1]))
            if m is None or m.group(self.group) is None:
                self._fail(batch, i, f"regex {self.regex.pattern!r} does not match")
            out.append(m.group(self.group))
        if self.numeric:
            try:
                return np.array([int(v) for v in out], dtype=np.int64)
            except ValueError:
                bad = next(i for i, v in enumerate(out) if not v.strip().lstrip("-").isdigit())
                self._fail(batch, bad, f"class_id {out[bad]!r} is not an integer")
        return np.array(out, dtype=object)


class TsvScheme(LabelScheme):
    """A TSV ``read_id<TAB>label`` (label: integer class_id or label name).

    Holds the whole table in memory: use it for modest files, or relabel headers once instead.
    """

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)
        table: dict[str, str] = {}
        with open(self.path, encoding="utf-8") as fh:
            for lineno, line in enumerate(fh, start=1):
                line = line.rstrip("\r\n")
                if not line or line.startswith("#"):
                    continue
                parts = line.split("\t")
                if len(parts) < 2:
                    raise InputError("expected 'read_id<TAB>label'", self.path, line=lineno)
                table[parts[0]] = parts[1]
        self.numeric = all(v.isdigit() for v in table.values())
        self.table = table
        self.name = f"tsv:{self.path}"

    def keys(self, batch: ReadBatch) -> np.ndarray:
        ids = batch.read_ids()
        out = []
        for i, rid in enumerate(ids):
            v = self.table.get(rid)
            if v is None:
                v = self.table.get(rid.rsplit("/", 1)[0])  # mates share a label
            if v is None:
                self._fail(batch, i, f"read id {rid!r} is not in {self.path}")
            out.append(v)
        if self.numeric:
            return np.array([int(v) for v in out], dtype=np.int64)
        return np.array(out, dtype=object)


def make_scheme(spec: str | None) -> LabelScheme:
    """``lbl`` (default), ``regex:<pattern>`` or ``tsv:<path>``."""
    if spec is None or spec == "lbl":
        return LblScheme()
    if spec.startswith("regex:"):
        return RegexScheme(spec[len("regex:"):])
    if spec.startswith("tsv:"):
        path = spec[len("tsv:"):]
        if not Path(path).exists():
            raise UsageError(f"label TSV {path}: no such file")
        return TsvScheme(path)
    raise UsageError(f"unknown label scheme {spec!r}; expected 'lbl', 'regex:<pattern>' or 'tsv:<path>'")


def report_skipped(skipped_unknown: int, skipped_bad: dict) -> None:
    """Log reads skipped for unknown classes (info) and malformed records by reason (warning)."""
    import logging

    log = logging.getLogger("readtax")
    if skipped_unknown:
        log.info("skipped %d reads of classes not in the mapping", skipped_unknown)
    if skipped_bad:
        log.warning("skipped %d malformed records: %s", sum(skipped_bad.values()),
                    ", ".join(f"{n} {r}" for r, n in sorted(skipped_bad.items())))


class Labeler:
    """Scheme + optional map: class indices for a batch, with missing-class handling.

    Without a map, classes are discovered in order of first appearance (and can be sorted by
    class id afterwards with :meth:`discovered_map`). ``skip_unknown`` counts reads whose class
    is not in the map instead of failing.
    """

    def __init__(self, scheme: LabelScheme, label_map: LabelMap | None = None,
                 *, skip_unknown: bool = False, skip_bad: bool = False) -> None:
        self.scheme = scheme
        self.label_map = label_map
        self.skip_unknown = skip_unknown
        self.skip_bad = skip_bad
        self.skipped = 0
        self.skipped_bad = 0
        self.skipped_keys: dict = {}
        self._found: dict = {}
        self._found_tax: dict = {}
        self._dense = np.zeros(0, dtype=np.int64)
        self._rank: np.ndarray | None = None  # class_rank(), while no class is added

    def classes(self, batch: ReadBatch) -> np.ndarray:
        """Class index per read (int64); -1 for reads skipped as unknown."""
        bad = None
        if isinstance(self.scheme, LblScheme):
            need_tax = self.label_map is None
            if self.skip_bad:
                keys, tax, bad = self.scheme.fields(batch, allow_bad=True, need_tax=need_tax)
                if not bad.any():
                    bad = None
            else:
                keys, tax = self.scheme.fields(batch, need_tax=need_tax)
        else:
            keys, tax = self.scheme.keys(batch), None
        if bad is not None:
            self.skipped_bad += int(bad.sum())
            good = np.flatnonzero(~bad)
            out = np.full(len(keys), -1, dtype=np.int64)
            out[good] = self._classes_of(keys[good], None if tax is None else tax[good], batch)
            return out
        return self._classes_of(keys, tax, batch)

    def _classes_of(self, keys: np.ndarray, tax: np.ndarray | None, batch: ReadBatch) -> np.ndarray:
        if self.label_map is None:
            return self._discover(keys, tax)
        idx = self.label_map.index(keys)
        missing = idx < 0
        if missing.any():
            if not self.skip_unknown:
                i = int(np.flatnonzero(missing)[0])
                rec = None if batch.first_record < 0 else batch.first_record + i + 1
                raise LabelError(
                    f"class {keys[i]!r} of read {batch.read_id(i)!r} is not in the mapping "
                    "(use --skip-unknown to skip and count such reads)",
                    batch.source or None, record=rec,
                )
            self.skipped += int(missing.sum())
            uniq, cnt = np.unique(np.asarray(keys)[missing], return_counts=True)
            for k, c in zip(uniq.tolist(), cnt.tolist()):
                self.skipped_keys[k] = self.skipped_keys.get(k, 0) + c
        return idx

    def _discover(self, keys: np.ndarray, tax: np.ndarray | None) -> np.ndarray:
        """Indices in order of first appearance (new keys of a batch in sorted order)."""
        dense = keys.dtype.kind in "iu" and len(keys) and keys.min() >= 0 and keys.max() < (1 << 24)
        if dense:
            top = int(keys.max()) + 1
            if len(self._dense) < top:
                grown = np.full(max(top, 2 * len(self._dense)), -1, dtype=np.int64)
                grown[: len(self._dense)] = self._dense
                self._dense = grown
            idx = self._dense[keys]
            new = idx < 0
            if not new.any():
                return idx
            sel = keys[new]
        else:
            sel = keys
        uniq, first = np.unique(sel, return_index=True)
        tax_new = None if tax is None else (tax[new][first] if dense else tax[first])
        if not dense:  # only the dense lookup proved every key new
            fresh = np.array([u not in self._found for u in uniq.tolist()], dtype=bool)
            uniq = uniq[fresh]
            tax_new = None if tax_new is None else tax_new[fresh]
        start = len(self._found)
        # In bulk: a unit of a full-size input discovers thousands of classes.
        self._found.update(zip(uniq.tolist(), range(start, start + len(uniq))))
        if tax_new is not None:
            self._found_tax.update(zip(uniq.tolist(), tax_new.astype(np.int64).tolist()))
        if dense:
            self._dense[uniq] = np.arange(start, start + len(uniq))
            return self._dense[keys]
        get = self._found.get
        return np.fromiter((get(k) for k in keys.tolist()), dtype=np.int64, count=len(keys))

    def class_rank(self) -> np.ndarray | None:
        """Rank of each class index in the order of the final label map, so that sorting by
        it sorts by class (None with a map: the indices are the map's own)."""
        if self.label_map is not None:
            return None
        if self._rank is not None and len(self._rank) == len(self._found):
            return self._rank
        keys = list(self._found)
        order = np.argsort(np.array(keys, dtype=np.int64 if self.scheme.numeric else object),
                           kind="stable")
        rank = np.empty(len(keys), np.int64)
        rank[order] = np.arange(len(keys))
        self._rank = rank
        return rank

    def discovered(self) -> tuple[np.ndarray, np.ndarray]:
        """The class keys seen so far in first-appearance index order (int64 class ids, or
        label names as an object array) and their tax ids (-1 where unknown)."""
        keys = list(self._found)
        tax = np.fromiter(map(self._found_tax.get, keys, itertools.repeat(-1)), np.int64,
                          count=len(keys))
        if self.scheme.numeric:
            return np.array(keys, dtype=np.int64), tax
        return np.array([str(k) for k in keys], dtype=object), tax

    def discovered_map(self) -> LabelMap:
        """The classes seen so far as a map, in first-appearance index order."""
        keys, tax = self.discovered()
        if self.scheme.numeric:
            return LabelMap(keys, list(map(str, keys.tolist())), tax)
        return LabelMap(np.arange(len(keys), dtype=np.int64), list(keys),
                        np.full(len(keys), -1, dtype=np.int64))
