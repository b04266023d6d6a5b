"""The ODE-VAE: networks, latent dynamics, loss and the LightningModule."""

from odevae.model.dynamics import SYSTEMS, LinearSystem, make_system, solve
from odevae.model.module import ODEVAE

__all__ = ["ODEVAE", "SYSTEMS", "LinearSystem", "make_system", "solve"]
