"""Error classes. The CLI prints one line per error and maps the class to an exit code."""

from __future__ import annotations

import os


class ReadtaxError(Exception):
    """Base class: an expected failure with a message meant for the user."""

    exit_code = 1


class UsageError(ReadtaxError):
    """Bad arguments or options (exit 2)."""

    exit_code = 2


class InputError(ReadtaxError):
    """Bad input data (exit 2); carries the file and, where known, the line or record."""

    exit_code = 2

    def __init__(
        self,
        message: str,
        path: str | os.PathLike[str] | None = None,
        *,
        line: int | None = None,
        record: int | None = None,
    ) -> None:
        self.message = message
        self.path = None if path is None else os.fspath(path)
        self.line = line
        self.record = record
        super().__init__(str(self))

    def __str__(self) -> str:
        where = []
        if self.path is not None:
            where.append(self.path)
        if self.line is not None:
            where.append(f"line {self.line}")
        if self.record is not None:
            where.append(f"record {self.record}")
        prefix = ": ".join(where)
        return f"{prefix}: {self.message}" if prefix else self.message


class FormatError(InputError):
    """A FASTA/FASTQ file that does not parse."""


class LabelError(InputError):
    """A header the label scheme cannot parse, or a label missing from the mapping."""


class StoreError(InputError):
    """A packed store that is missing, incomplete, corrupt or of an unknown format."""


class ModelError(InputError):
    """A model directory that cannot be loaded or does not fit the data."""


class MissingExtraError(ReadtaxError):
    """An optional dependency group is not installed."""

    exit_code = 2

    def __init__(self, extra: str, module: str) -> None:
        super().__init__(
            f"this command needs the '{extra}' extra ({module} is not installed): "
            f"pip install 'readtax[{extra}]'"
        )


def require(module: str, extra: str = "train"):
    """Import an optional dependency or raise a MissingExtraError that says how to install it."""
    import importlib

    try:
        return importlib.import_module(module)
    except ModuleNotFoundError as exc:
        raise MissingExtraError(extra, module) from exc
