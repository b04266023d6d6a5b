"""A validation loss that ends far above its minimum is flagged, per fold."""

import pandas as pd

from odevae.evaluate.prediction.training_check import flag_diverged, validation_course


def metrics(losses):
    """Lightning's CSV layout: a validation row and a training row per epoch."""
    rows = []
    for epoch, loss in enumerate(losses):
        rows.append({"epoch": epoch, "val/loss": loss, "train/loss": None})
        rows.append({"epoch": epoch, "val/loss": None, "train/loss": 1.0})
    return pd.DataFrame(rows)


def test_course_flags_a_final_loss_above_factor_times_the_minimum():
    course = validation_course(
        {
            0: metrics([300.0, 159.0, 170.0, 3131.0]),  # the registry preset's fold
            1: metrics([300.0, 159.0, 170.0, 200.0]),
            2: metrics([-10.0, -40.0, 5.0]),  # negative NLL: threshold -40 + |-40| = 0
            3: metrics([-10.0, -40.0, -21.0]),
        },
        factor=2.0,
    ).set_index("fold")
    assert course["diverged"].tolist() == [True, False, True, False]
    assert course.loc[0, "val_loss_min_epoch"] == 1
    assert course.loc[0, "epochs"] == 4
    assert course.loc[0, "val_loss_final"] == 3131.0
    best = validation_course({0: metrics([300.0, 159.0, 3131.0])}, 2.0, kept="best")
    assert not best.loc[0, "diverged"]  # early stopping kept epoch 1's model
    assert best.loc[0, "val_loss_kept"] == 159.0


def test_summary_flags_model_rows_of_the_diverged_fold_only():
    course = pd.DataFrame({"fold": [0, 1], "diverged": [True, False]})
    summary = pd.DataFrame(
        {
            "method": ["odevae", "odevae", "locf", "odevae_mixed"],
            "fold": ["0", "1", "0", "pooled"],
        }
    )
    flagged = flag_diverged(summary, course)
    assert flagged["model_diverged"].tolist() == [True, False, False, True]
