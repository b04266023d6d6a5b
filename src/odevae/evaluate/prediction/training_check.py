"""Did a fold's training end where its validation loss was lowest? A loss curve
that ends far above its minimum is flagged, never silently accepted."""

from __future__ import annotations

import pandas as pd

#: Methods whose predictions come from the fold's trained model.
MODEL_METHODS = (
    "odevae",
    "odevae_mixed",
    "odevae_combined",
    "odevae_population",
    "vae_roundtrip",
    "ols_latent",
)


def validation_course(
    metrics: dict[int, pd.DataFrame], factor: float, kept: str = "last"
) -> pd.DataFrame:
    """Per fold: epochs, the minimum validation loss and its epoch, the final one,
    the one of the model kept (``kept``: ``last`` epoch, or ``best`` with early
    stopping), and ``diverged``: kept > minimum + (factor − 1)·|minimum| (``factor``
    times the minimum for a positive loss; losses with learned variances can be
    negative)."""
    rows = []
    for fold, table in sorted(metrics.items()):
        val = table.dropna(subset=["val/loss"])
        if val.empty:
            continue
        best = val.loc[val["val/loss"].idxmin()]
        final = float(val["val/loss"].iloc[-1])
        low = float(best["val/loss"])
        kept_loss = low if kept == "best" else final
        rows.append(
            {
                "fold": fold,
                "epochs": int(val["epoch"].max()) + 1,
                "val_loss_min": low,
                "val_loss_min_epoch": int(best["epoch"]),
                "val_loss_final": final,
                "kept": kept,
                "val_loss_kept": kept_loss,
                "diverged": kept_loss > low + (factor - 1.0) * abs(low),
            }
        )
    return pd.DataFrame(rows)


def flag_diverged(summary: pd.DataFrame, course: pd.DataFrame) -> pd.DataFrame:
    """``summary`` with a ``model_diverged`` column: on the rows of a model-based
    method, whether that fold's training diverged (any fold for mean, sd, pooled)."""
    diverged = dict(zip(course["fold"].astype(str), course["diverged"], strict=True))
    anywhere = bool(course["diverged"].any())
    model = summary["method"].isin(MODEL_METHODS)
    flag = summary["fold"].map(diverged).fillna(anywhere).astype(bool)
    return summary.assign(model_diverged=model & flag)
