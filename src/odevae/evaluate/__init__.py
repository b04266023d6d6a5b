"""Stages 5-6, predict and evaluate: per-patient outputs of a trained model,
held-out prediction (``prediction/``), ground-truth recovery and seed sweeps."""
