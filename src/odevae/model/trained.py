"""A trained ODE-VAE without Lightning: its checkpoint loaded into the core
(:class:`~odevae.model.core.ODEVAECore`) and its settings, for prediction and
figures. Importing Lightning costs a job seconds that these jobs do not need.

:class:`CoreAccess` is the interface that prediction and figures use; both the
training module (:class:`~odevae.model.module.ODEVAE`) and :class:`TrainedODEVAE`
have it, so either can be passed where a model is expected.
"""

from __future__ import annotations

from types import SimpleNamespace

import torch
from torch import nn

from odevae.model.core import ODEVAECore
from odevae.model.objectives import make_objective
from odevae.model.settings import hyperparameters


class CoreAccess:
    """A model's core (``self.core``) reached through the model."""

    core: ODEVAECore

    @property
    def param_names(self) -> list[str]:
        return self.core.param_names

    @property
    def time_scale(self) -> float:
        """Data time units per internal time unit: the ODE runs in t / time_scale."""
        return self.core.time_scale

    def set_scaling(self, x_mean, x_std, z_mean, z_std, z_fill=None) -> None:
        """See :meth:`ODEVAECore.set_scaling`."""
        self.core.set_scaling(x_mean, x_std, z_mean, z_std, z_fill)

    def scale(self, batch: dict) -> dict:
        """Raw-unit batch → model units (:meth:`ODEVAECore.scale`)."""
        return self.core.scale(batch)

    def forward(
        self, batch: dict, n_history: torch.Tensor | None = None, sample: bool = False
    ) -> dict:
        """Encodings, ODE parameters and solutions (:meth:`ODEVAECore.forward`)."""
        return self.core(batch, n_history, sample)

    def posterior(self, batch, n_history, prior=None, times=None):
        """The ODE parameters' posterior (:meth:`ODEVAECore.posterior`)."""
        return self.core.posterior(batch, n_history, prior, times)

    def infer(self, batch, n_history, prior=None, times=None):
        """The posterior and the state correction (:meth:`ODEVAECore.infer`)."""
        return self.core.infer(batch, n_history, prior, times)

    def solve(self, u0: torch.Tensor, theta: torch.Tensor, t: torch.Tensor):
        """Latent trajectories (:meth:`ODEVAECore.solve`)."""
        return self.core.solve(u0, theta, t)

    def rates_per_data_unit(self, theta: torch.Tensor) -> torch.Tensor:
        """Parameters per data time unit (:meth:`ODEVAECore.rates_per_data_unit`)."""
        return self.core.rates_per_data_unit(theta)


def legacy_state_keys(module, state_dict, prefix, *args) -> None:
    """Checkpoints of the flat module name its parts ``encoder.*``, ``x_mean``, …;
    they are the core's now (``core.encoder.*``)."""
    for key in list(state_dict):
        if key.startswith(prefix) and not key.startswith(prefix + "core."):
            state_dict[f"{prefix}core.{key[len(prefix) :]}"] = state_dict.pop(key)


def build_core(hparams: dict) -> ODEVAECore:
    """The core of filled-in ``hparams`` (:func:`~odevae.model.settings.
    hyperparameters`); the history encoder only where the loss fits dynamics."""
    return ODEVAECore(
        hparams["p"],
        hparams["q"],
        hparams["model"],
        hparams["binary"],
        hparams["time_scale"],
        history=make_objective(hparams["loss"]).dynamics,
    )


class TrainedODEVAE(CoreAccess, nn.Module):
    """A trained model for prediction: ``core`` and ``hparams`` (attributes
    ``p``, ``q``, ``model``, ``loss``, ``lr``, ``binary``, ``time_scale``), in
    evaluation mode. Load one with :func:`load_trained`."""

    def __init__(self, hparams: dict) -> None:
        super().__init__()
        self.hparams = SimpleNamespace(**hparams)
        self.core = build_core(hparams)
        self.register_load_state_dict_pre_hook(legacy_state_keys)
        self.eval()

    @property
    def device(self) -> torch.device:
        return self.core.x_mean.device


def load_trained(checkpoint: str, map_location: str = "cpu") -> TrainedODEVAE:
    """The model saved in a training checkpoint (``model.ckpt``), old layouts
    included, on ``map_location``."""
    saved = torch.load(checkpoint, map_location=map_location, weights_only=True)
    model = TrainedODEVAE(hyperparameters(**saved["hyper_parameters"]))
    model.load_state_dict(saved["state_dict"])
    return model.to(map_location)
