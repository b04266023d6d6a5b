"""Lightning callbacks and output handling of a training run: the terminal progress
bar, a log line per tenth of the epochs (and at least once a minute) with the time
spent and an estimate of the time left, a stop on a non-finite loss, and filters for
third-party noise (Lightning tips, known harmless warnings)."""

from __future__ import annotations

import contextlib
import logging
import math
import sys
import time
import warnings
from collections.abc import Iterator

import torch
from lightning.pytorch.callbacks import Callback, TQDMProgressBar
from lightning.pytorch.utilities.warnings import PossibleUserWarning

from odevae.errors import InputError

log = logging.getLogger("odevae.train.training")  # one logger for a run's lines


def duration(seconds: float) -> str:
    """``seconds`` as h:mm:ss."""
    whole = int(round(seconds))
    return f"{whole // 3600}:{whole % 3600 // 60:02d}:{whole % 60:02d}"


class Clock:
    """Time spent on a series of ``total`` epochs (one training, or every restart
    probe of a fold) and the time left, extrapolated from the mean epoch so far."""

    def __init__(self, total: int) -> None:
        self.total = total
        self.started: float | None = None

    def start(self) -> None:
        if self.started is None:
            self.started = time.monotonic()

    def elapsed(self) -> float:
        return 0.0 if self.started is None else time.monotonic() - self.started

    def progress(self, done: int, upper_bound: bool = False) -> str:
        """ "h:mm:ss elapsed, about h:mm:ss left" after ``done`` epochs of the series
        (``upper_bound``: "at most", where early stopping may end it sooner)."""
        spent = self.elapsed()
        left = spent / done * (self.total - done) if done else math.nan
        estimate = "unknown" if math.isnan(left) else duration(left)
        bound = "at most" if upper_bound else "about"
        return f"{duration(spent)} elapsed, {bound} {estimate} left"


class TerminalProgressBar(TQDMProgressBar):
    """Lightning's progress bar drawn on ``stream``, a terminal, described as
    "Epoch k/n" with the time spent and left (:class:`Clock`).

    Lightning draws on ``sys.stdout``, which a workflow job sends to its log file;
    this bar draws on the terminal instead, so that no log gets its redraws.
    """

    def __init__(self, stream, upper_bound: bool = False) -> None:
        super().__init__()
        self.stream = stream
        self.upper_bound = upper_bound
        self.clock: Clock | None = None

    def on_train_start(self, trainer, pl_module) -> None:
        super().on_train_start(trainer, pl_module)
        self.clock = Clock(trainer.max_epochs)
        self.clock.start()

    def on_train_epoch_start(self, trainer, pl_module) -> None:
        super().on_train_epoch_start(trainer, pl_module)
        done = trainer.current_epoch
        self.train_progress_bar.set_description(
            f"Epoch {done + 1}/{trainer.max_epochs} "
            f"({self.clock.progress(done, self.upper_bound)})"
        )

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
    """One log line per ``every`` epochs, at least every ``interval`` seconds, and
    after the last, with the epoch's ``train/loss`` and ``val/loss``, the time spent
    and an estimate of the time left: a record that stays small, unlike a bar.

    ``label`` names the series ("" for the fold's training, e.g. "probe 2/3 (seed
    1043)" for a restart probe); ``clock`` and ``offset`` place these epochs in a
    longer series (every probe of a fold), whose time left the line estimates;
    ``upper_bound``: early stopping may end the training sooner.
    """

    def __init__(
        self,
        fold: int,
        epochs: int,
        lines: int = 10,
        *,
        label: str = "",
        clock: Clock | None = None,
        offset: int = 0,
        upper_bound: bool = False,
        interval: float = 60.0,
    ) -> None:
        self.fold, self.epochs = fold, epochs
        self.every = max(1, math.ceil(epochs / lines))
        self.logged = 0
        self.label = f"{label}: " if label else ""
        self.clock = clock or Clock(epochs)
        self.offset, self.upper_bound, self.interval = offset, upper_bound, interval
        self.last_line = -math.inf

    def _log(self, trainer, done: int) -> None:
        if done == 0 or done == self.logged:
            return
        self.logged = done
        self.last_line = self.clock.elapsed()
        metrics = trainer.callback_metrics
        losses = ", ".join(
            f"{key} {float(metrics[key]):.6g}"
            for key in ("train/loss", "val/loss")
            if key in metrics
        )
        log.info(
            "fold %d: %sepoch %d/%d: %s; %s",
            self.fold,
            self.label,
            done,
            self.epochs,
            losses,
            self.clock.progress(self.offset + done, self.upper_bound),
        )

    def on_train_start(self, trainer, pl_module) -> None:
        self.clock.start()
        self.last_line = self.clock.elapsed()

    # The module logs an epoch's training losses after the callbacks' epoch-end
    # hooks: report each epoch when the next one starts, and the last at the end.
    def on_train_epoch_start(self, trainer, pl_module) -> None:
        due = self.clock.elapsed() - self.last_line >= self.interval
        if trainer.current_epoch % self.every == 0 or due:
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
