"""The ODE-VAE: the catalogue of systems (``systems``), networks, latent dynamics
(``dynamics``, ``solving``), the core module of networks and dynamics (``core``),
the losses, the LightningModule (``module``) and a trained model loaded without
Lightning for prediction and figures (``trained``).

The package imports nothing: :mod:`odevae.model.systems` is torch-free (the workflow
checks a config with it before any job starts), and callers import the torch
modules by name (``from odevae.model.module import ODEVAE``).
"""
