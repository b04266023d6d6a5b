"""Patients with irregular visits as padded tensors: dataset and collate.

A batch stacks patients padded to the largest number of visits among them, with a
visit mask and an observation mask (latent_ode-style): losses are masked and summed
per patient. Training (:mod:`odevae.train.data`), prediction and figures read
patients through these.
"""

from __future__ import annotations

import torch
from torch.utils.data import Dataset

from odevae.data.cohort import Cohort


class CohortDataset(Dataset):
    """One item per patient: its padded visits, masks and baseline covariates."""

    def __init__(self, cohort: Cohort) -> None:
        self.cohort = cohort
        # copies: the cohort's arrays may be read-only views, which torch must not
        # share memory with
        self.tensors = {
            "times": torch.tensor(cohort.times, dtype=torch.float32),
            "values": torch.tensor(cohort.values, dtype=torch.float32),
            "observed": torch.tensor(cohort.observed),
            "visits": torch.tensor(cohort.visits),
            "baseline": torch.tensor(cohort.baseline, dtype=torch.float32),
        }

    def __len__(self) -> int:
        return self.cohort.n

    def __getitem__(self, i: int) -> dict:
        return {key: value[i] for key, value in self.tensors.items()} | {"index": i}

    def __getitems__(self, indices: list[int]) -> dict:
        """A whole batch by one gather per tensor (the DataLoader's batched fetch)."""
        index = torch.as_tensor(indices)
        return {key: value[index] for key, value in self.tensors.items()} | {
            "index": index
        }


def collate(items: list[dict] | dict) -> dict:
    """Stack patients and trim the padding to the batch's largest visit count.

    Accepts a list of items or a batch already stacked by ``__getitems__``.
    """
    if isinstance(items, dict):
        batch = dict(items)
    else:
        batch = {
            key: torch.stack([item[key] for item in items])
            for key in items[0]
            if key != "index"
        }
        batch["index"] = torch.tensor([item["index"] for item in items])
    width = int(batch["visits"].sum(1).max())
    for key in ("times", "values", "observed", "visits"):
        batch[key] = batch[key][:, :width]
    return batch
