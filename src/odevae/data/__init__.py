"""Stage 1, data: reading, validating, ingesting, simulating and preprocessing
cohorts, and cross-validation folds (torch-free)."""
