"""The ODE-VAE: the catalogue of systems, networks, latent dynamics, the core
module of networks and dynamics, the losses and the LightningModule.

:mod:`odevae.model.systems` is torch-free (the workflow checks a config with it
before any job starts), so this package imports its torch modules lazily:
``from odevae.model import ODEVAE`` loads torch, ``odevae.model.systems`` does not.
"""

from __future__ import annotations

import importlib

_LAZY = {
    "ODEVAE": "odevae.model.module",
    "ODEVAECore": "odevae.model.core",
    "SYSTEMS": "odevae.model.dynamics",
    "LinearSystem": "odevae.model.dynamics",
    "make_system": "odevae.model.dynamics",
    "solve": "odevae.model.solving",
}

__all__ = ["ODEVAE", "ODEVAECore", "SYSTEMS", "LinearSystem", "make_system", "solve"]


def __getattr__(name: str):
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
