"""Held-out prediction in data units: targets, the model's predictors, comparators
and their scores.

Every method predicts the same targets (:func:`~odevae.evaluate.prediction.targets.
prediction_targets`): visit j of a held-out patient from the patient's baseline
covariates and its first ``n_history`` visits only, in modelling units (after the
configured transforms, before standardisation).
"""
