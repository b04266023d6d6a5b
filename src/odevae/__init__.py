"""odevae: individual disease trajectories from small longitudinal cohorts.

A variational autoencoder maps each visit's measurements to a low-dimensional latent
state whose dynamics follow an ODE with patient-specific parameters, predicted from
baseline covariates (Hackenberg et al., Biometrical Journal 2022; arXiv 2311.16286).
"""

__version__ = "0.1.0"
