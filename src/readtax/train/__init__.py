"""``readtax train``: fine-tune a read classifier on a store or FASTA/FASTQ, resumably.

:mod:`.recipe` holds :class:`TrainRecipe` (set up, train, save, resume) and
:func:`run_training`; :mod:`.trainer` the Hugging Face ``Trainer`` subclass and callbacks it
plugs in; :mod:`.data` the loader wrapper and the size probes the schedule is computed from.
"""

from .data import ObservedLoader, estimate_train_reads, probe_read_length, probe_tokens
from .recipe import TrainRecipe, eval_batch_size, run_training
from .trainer import format_log_line

__all__ = [
    "ObservedLoader",
    "TrainRecipe",
    "estimate_train_reads",
    "eval_batch_size",
    "format_log_line",
    "probe_read_length",
    "probe_tokens",
    "run_training",
]
