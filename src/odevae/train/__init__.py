"""Stage 4, train: data modules (plain and similarity batching), restarts and the
Lightning training loop. Modules import torch; this package file does not."""
