"""Lightning callbacks and output handling of a training run: the terminal progress
bar, a log line per tenth of the epochs, a stop on a non-finite loss, and filters for
third-party noise (Lightning tips, known harmless warnings)."""

from __future__ import annotations

import contextlib
import logging
import math
import sys
import warnings
from collections.abc import Iterator

import torch
from lightning.pytorch.callbacks import Callback, TQDMProgressBar
from lightning.pytorch.utilities.warnings import PossibleUserWarning

from odevae.errors import InputError

log = logging.getLogger("odevae.train.training")  # one logger for a run's lines


class TerminalProgressBar(TQDMProgressBar):
    """Lightning's progress bar drawn on ``stream``, a terminal.

    Lightning draws on ``sys.stdout``, which a workflow job sends to its log file;
    this bar draws on the terminal instead, so that no log gets its redraws.
    """

    def __init__(self, stream) -> None:
        super().__init__()
        self.stream = stream

    def _on(self, init):
        with contextlib.redirect_stdout(self.stream):
            return init()

    def init_sanity_tqdm(self):
        return self._on(super().init_sanity_tqdm)

    def init_train_tqdm(self):
        return self._on(super().init_train_tqdm)

    def init_validation_tqdm(self):
        return self._on(super().init_validation_tqdm)

    def init_predict_tqdm(self):
        return self._on(super().init_predict_tqdm)

    def init_test_tqdm(self):
        return self._on(super().init_test_tqdm)


def terminal():
    """The terminal this process draws on: its stdout if that is one, else the
    stdout it started with (a workflow job redirects ``sys.stdout`` to its log);
    ``None`` when neither is a terminal (batch jobs, logs, captured output)."""
    for stream in (sys.stdout, sys.__stdout__):
        isatty = getattr(stream, "isatty", None)
        if isatty is not None and isatty():
            return stream
    return None


class EpochLog(Callback):
    """One log line per ``every`` epochs (and after the last) with the epoch's
    ``train/loss`` and ``val/loss``: a record that stays small, unlike a bar."""

    def __init__(self, fold: int, epochs: int, lines: int = 10) -> None:
        self.fold, self.epochs = fold, epochs
        self.every = max(1, math.ceil(epochs / lines))
        self.logged = 0

    def _log(self, trainer, done: int) -> None:
        if done == 0 or done == self.logged:
            return
        self.logged = done
        metrics = trainer.callback_metrics
        losses = ", ".join(
            f"{key} {float(metrics[key]):.6g}"
            for key in ("train/loss", "val/loss")
            if key in metrics
        )
        log.info("fold %d: epoch %d/%d: %s", self.fold, done, self.epochs, losses)

    # The module logs an epoch's training losses after the callbacks' epoch-end
    # hooks: report each epoch when the next one starts, and the last at the end.
    def on_train_epoch_start(self, trainer, pl_module) -> None:
        if trainer.current_epoch % self.every == 0:
            self._log(trainer, trainer.current_epoch)

    def on_train_end(self, trainer, pl_module) -> None:
        self._log(trainer, trainer.current_epoch)


class _DropTips(logging.Filter):
    """Drops Lightning's advertisements ("💡 Tip: ... litlogger/litmodels")."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not str(record.msg).startswith("💡 Tip:")


def drop_lightning_tips() -> None:
    source = logging.getLogger("lightning.pytorch.utilities.rank_zero")
    if not any(isinstance(f, _DropTips) for f in source.filters):
        source.addFilter(_DropTips())


@contextlib.contextmanager
def third_party_noise_filtered() -> Iterator[None]:
    """Known harmless third-party warnings left out of training output: torch's
    deprecation of ``LeafSpec`` (used by Lightning 2.6) and Lightning's hint to use
    ``srun`` where SLURM is installed (each fold trains on one device)."""
    with warnings.catch_warnings():
        warnings.filterwarnings(
            "ignore",
            message=r"`isinstance\(treespec, LeafSpec\)` is deprecated",
            category=FutureWarning,
        )
        warnings.filterwarnings(
            "ignore",
            message="The `srun` command is available on your system but is not used",
            category=PossibleUserWarning,
        )
        yield


class StopOnNonFinite(Callback):
    """Stop training at the first non-finite training loss with one clear error
    naming the fold, the epoch and the likely causes (``hints``)."""

    def __init__(self, fold: int, hints: str) -> None:
        self.fold, self.hints = fold, hints

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        loss = outputs["loss"] if isinstance(outputs, dict) else outputs
        if loss is not None and not torch.isfinite(loss).all():
            raise InputError(
                f"fold {self.fold}, epoch {trainer.current_epoch}: the training loss "
                f"is {loss.item()}, not a finite number; likely causes: {self.hints}"
            )
