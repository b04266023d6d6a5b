"""Stage 1, data: reading, validating, ingesting, simulating and preprocessing
cohorts, and cross-validation folds (torch-free), and the patients as padded tensors
(``batching``, torch)."""
