"""The ODE-VAE as a LightningModule: the networks and dynamics of
:class:`~odevae.model.core.ODEVAECore` trained with a loss of
:mod:`~odevae.model.objectives`, both built from the ``model`` and ``loss`` config
sections."""

from __future__ import annotations

from itertools import islice

import lightning as L
import torch

from odevae.model.flat_adam import FlatAdam
from odevae.model.objectives import loss_terms, make_objective
from odevae.model.settings import hyperparameters
from odevae.model.trained import CoreAccess, build_core, legacy_state_keys


class ODEVAE(CoreAccess, L.LightningModule):
    """VAE with individual latent ODE dynamics, trained on batches of patients.

    ``model`` and ``loss`` are the config sections of those names (missing keys
    take :mod:`~odevae.model.settings`' defaults; the ``model`` section's data
    settings are ignored); they are stored filled in as the hyperparameters
    ``model`` and ``loss``, with ``p``, ``q``, ``lr``, ``binary`` (the
    measurements with a Bernoulli likelihood) and ``time_scale`` (data time units
    per internal time unit). Settings may also be given as flat keywords, as the
    hyperparameters of older checkpoints are (``loss="statistical"``,
    ``kl_weight=…``; see :func:`~odevae.model.settings.hyperparameters`).

    ``core`` (:class:`~odevae.model.core.ODEVAECore`) holds the networks,
    dynamics and scaling statistics, ``objective`` the loss; the core's interface
    is :class:`~odevae.model.trained.CoreAccess`. A batch is a dict of tensors:
    ``times`` (B, T), ``values`` (B, T, p), ``observed`` (B, T, p) bool,
    ``visits`` (B, T) bool and ``baseline`` (B, q); raw-unit batches are scaled
    by :meth:`scale` (identity unless :meth:`set_scaling` was called). Training
    takes a pass over the training patients per Lightning step
    (:meth:`training_step`). Prediction
    loads a checkpoint without Lightning (:func:`~odevae.model.trained.
    load_trained`).
    """

    def __init__(self, p: int, q: int, **settings) -> None:
        """``settings``: ``model``, ``loss``, ``lr``, ``binary``, ``time_scale`` or
        older flat keywords, as :func:`~odevae.model.settings.hyperparameters`
        takes them."""
        super().__init__()
        hparams = hyperparameters(p, q, **settings)
        self.save_hyperparameters(hparams)
        self.objective = make_objective(hparams["loss"])
        self.core = build_core(hparams)
        self._sums: dict = {}  # per stage: running sums of the epoch's loss terms
        self._extra: dict = {}  # further epoch values for the loggers' rows
        # optimiser steps are taken in training_step: a pass over the training
        # patients is one Lightning step (see training_step)
        self.automatic_optimization = False
        self.register_load_state_dict_pre_hook(legacy_state_keys)

    # --- training ---------------------------------------------------------------

    def loss_terms(self, batch: dict, sample: bool) -> dict:
        """Per-patient loss terms (``per_patient``) and the batch loss (``loss``)
        of a scaled ``batch`` (:func:`~odevae.model.objectives.loss_terms`)."""
        return loss_terms(self.core, self.objective, batch, sample)

    def _shared_step(self, batch: dict, stage: str) -> torch.Tensor:
        """Loss of one batch; its terms are summed for the epoch's ``stage/*`` means.

        Metrics are logged once per epoch (:meth:`_log_epoch`) rather than with one
        ``self.log`` per term and step, whose per-call cost dominates small batches.
        The epoch value is the batch-size-weighted mean over the epoch's batches.
        """
        terms = self.loss_terms(self.scale(batch), sample=stage == "train")
        size = batch["visits"].shape[0]
        sums = self._sums.setdefault(stage, {"_n": 0})
        sums["_n"] += size
        for key, value in terms.items():
            if key != "per_patient":
                sums[key] = sums.get(key, 0.0) + value.detach() * size
        return terms["loss"]

    def log_epoch_value(self, name: str, value: float) -> None:
        """Add ``name`` (``train/...`` or ``val/...``) with ``value`` to the row
        this epoch's losses of that stage are logged in (callbacks' per-epoch
        values, such as the similarity batches' purity)."""
        self._extra[name] = torch.tensor(value, dtype=torch.float32)

    def _log_epoch(self, stage: str) -> None:
        """The epoch's ``stage/*`` means: the loss through ``self.log`` (what
        early stopping, checkpoints, the progress bar and the epoch log read), and
        every term to the loggers, one row per stage and epoch as Lightning writes
        logged epoch values (``epoch``, and as ``step`` the epoch: a pass over the
        patients is one Lightning step). Each ``self.log`` costs about half a
        millisecond (Lightning moves the metric's state at every call): for
        eight terms per epoch, about 4 % of a default training."""
        sums = self._sums.pop(stage, None)
        mine = [key for key in self._extra if key.startswith(f"{stage}/")]
        extra = {key: self._extra.pop(key) for key in mine}
        if not sums or not sums["_n"]:
            return
        n = sums.pop("_n")
        means = {f"{stage}/{key}": total / n for key, total in sums.items()}
        self.log(f"{stage}/loss", means[f"{stage}/loss"], prog_bar=True, logger=False)
        if self.trainer.sanity_checking:  # Lightning logs nothing of these
            return
        row = {**means, **extra, "epoch": self.current_epoch}
        for logger in self.loggers:
            logger.log_metrics(row, step=self.current_epoch)
            logger.save()

    def training_step(self, batches, batch_idx: int) -> torch.Tensor:
        """One optimiser step per batch of ``batches`` (a pass over the training
        patients, :class:`~odevae.train.batches.Pass`); returns the sum of their
        losses. Under ``fast_dev_run`` (n) only the pass's first n batches.

        The steps are what Lightning's automatic optimisation does with this
        module (zero the gradients, backward through the precision plugin, the
        Lightning-wrapped Adam step; no clipping or accumulation), so their
        numbers are the same. Run inside one Lightning step, they skip the loop's
        per-batch work (the ``on_train_batch_*``, ``optimizer_zero_grad`` and
        ``optimizer_step`` hooks among it), which costs more than a small batch's
        forward and backward. ``trainer.global_step`` still counts optimiser
        steps. A non-finite loss ends the pass and the training before its step
        is taken, and is returned
        (:class:`~odevae.train.callbacks.StopOnNonFinite` turns it into the
        workflow's error); the check is one host synchronisation per step, as the
        callback's was.
        """
        optimizer = self.optimizers()
        batches = batches.batches
        if self.trainer.fast_dev_run:
            batches = islice(batches, int(self.trainer.fast_dev_run))
        total = None
        for batch in batches:
            optimizer.zero_grad()
            loss = self._shared_step(batch, "train")
            if not torch.isfinite(loss):
                self.trainer.should_stop = True
                return loss.detach()
            self.manual_backward(loss)
            optimizer.step()
            total = loss.detach() if total is None else total + loss.detach()
        return total

    def validation_step(self, batch: dict, batch_idx: int) -> torch.Tensor:
        return self._shared_step(batch, "val")

    def test_step(self, batch: dict, batch_idx: int) -> torch.Tensor:
        return self._shared_step(batch, "test")

    def on_train_epoch_end(self) -> None:
        self._log_epoch("train")

    def on_validation_epoch_end(self) -> None:
        self._log_epoch("val")

    def on_test_epoch_end(self) -> None:
        self._log_epoch("test")

    def configure_optimizers(self):
        # torch's Adam on all parameters as one flat tensor: the same numbers in
        # one operator per stage of the update (odevae.model.flat_adam); on one
        # tensor the single-tensor path does that with less bookkeeping than the
        # foreach path's lists (the same numbers, tests/test_flat_adam.py)
        return FlatAdam(self.parameters(), lr=self.hparams.lr, foreach=False)
