"""Checkpoints: the sections stored as hyperparameters, and checkpoints of the
flat-argument module (hyperparameters ``kl_weight=…``, ``loss="statistical"``,
state ``encoder.*``, ``x_mean``, …) loading into the current one."""

import lightning as L
import numpy as np
import pytest
import torch

from odevae.evaluate.prediction.model import model_predictions
from odevae.model.module import ODEVAE
from odevae.model.settings import LOSS_DEFAULTS, MODEL_DEFAULTS, sections_from_flat
from odevae.model.trained import load_trained
from odevae.train.model_setup import build_model
from tests.conftest import batch_of

#: The hyperparameters of a checkpoint of the flat-argument module as it saved
#: them (every keyword of its ``__init__``), here with a statistical loss and a
#: history encoder.
FLAT = {
    "latent_dim": 2,
    "system": "linear_diagonal",
    "fixed_params": None,
    "neural": None,
    "param_bound": "auto",
    "param_scale": 1.0,
    "bottleneck": 0,
    "hidden_width": 0,
    "solver": "auto",
    "rtol": 1e-6,
    "atol": 1e-7,
    "adjoint": False,
    "loss": "statistical",
    "kl_weight": 0.3,
    "free_bits": 0.1,
    "decoder_l2": 0.02,
    "param_l2": 0.05,
    "param_group_lasso": 0.0,
    "consistency_weight": 1.0,
    "own_reconstruction_weight": 0.5,
    "weighting": False,
    "skip_own": True,
    "mu_weight": 1.5,
    "var_weight": 2.0,
    "var_penalty": "ratio_sum",
    "var_offset": 0.1,
    "lr": 1e-3,
    "binary": None,
    "time_scale": 2.0,
    "history": "gru",
    "history_hidden": 8,
    "history_kl_weight": 1.0,
    "forecast_weight": 0.5,
}


def split(cohort):
    return cohort.subset(np.arange(10)), cohort.subset(np.arange(10, cohort.n))


def flat_checkpoint(model: ODEVAE, hparams: dict, path) -> None:
    """``model``'s weights saved as the flat-argument module saved them."""
    state = {k.removeprefix("core."): v for k, v in model.state_dict().items()}
    torch.save(
        {
            "state_dict": state,
            "hyper_parameters": hparams,
            "hparams_name": "kwargs",
            "pytorch-lightning_version": L.__version__,
        },
        path,
    )


def trained_a_little(model: ODEVAE, cohort) -> ODEVAE:
    """``model`` after a few Adam steps (weights off their initialisation)."""
    optimiser = model.configure_optimizers()
    train, _ = split(cohort)
    for _ in range(3):
        loss = model.loss_terms(model.scale(batch_of(train, range(train.n))), True)
        optimiser.zero_grad()
        loss["loss"].backward()
        optimiser.step()
    return model.eval()


def test_flat_hyperparameters_map_into_the_sections():
    model, loss = sections_from_flat(
        {k: v for k, v in FLAT.items() if k not in ("lr", "binary", "time_scale")}
    )
    assert model["history"] == "gru" and model["history_hidden"] == 8
    assert loss["kind"] == "statistical" and loss["kl_weight"] == 0.3
    assert loss["statistical"] == {
        "weighting": False,
        "skip_own": True,
        "mu_weight": 1.5,
        "var_weight": 2.0,
        "var_penalty": "ratio_sum",
        "var_offset": 0.1,
    }
    with pytest.raises(TypeError, match="kl_wieght"):
        sections_from_flat({"kl_wieght": 0.1})


def test_flat_keywords_build_the_same_model_as_the_sections(tiny_cohort):
    p, q = tiny_cohort.p, tiny_cohort.q
    settings = {k: v for k, v in FLAT.items() if k not in ("lr", "binary")}
    torch.manual_seed(0)
    flat = ODEVAE(p=p, q=q, **settings)
    model, loss = sections_from_flat(
        {k: v for k, v in settings.items() if k != "time_scale"}
    )
    torch.manual_seed(0)
    sections = ODEVAE(p=p, q=q, model=model, loss=loss, time_scale=2.0)
    assert flat.hparams == sections.hparams
    for key, value in flat.state_dict().items():
        assert torch.equal(value, sections.state_dict()[key]), key


def test_checkpoint_of_the_flat_module_loads_and_predicts_identically(
    tiny_cohort, tmp_path
):
    torch.manual_seed(0)
    model = ODEVAE(p=tiny_cohort.p, q=tiny_cohort.q, **FLAT)
    torch.nn.init.normal_(model.core.history_encoder.head.weight, std=0.5)
    model = trained_a_little(model, tiny_cohort)
    flat_checkpoint(
        model, {"p": tiny_cohort.p, "q": tiny_cohort.q, **FLAT}, tmp_path / "old.ckpt"
    )
    loaded = ODEVAE.load_from_checkpoint(tmp_path / "old.ckpt", map_location="cpu")
    light = load_trained(tmp_path / "old.ckpt")  # prediction's loader, no Lightning
    for got in (loaded, light):
        assert got.hparams.loss["statistical"]["var_penalty"] == "ratio_sum"
        assert got.hparams.model["history_hidden"] == 8
        assert got.time_scale == 2.0 and got.hparams.lr == 1e-3
    for key, value in model.state_dict().items():
        assert torch.equal(value, loaded.state_dict()[key]), key
        assert torch.equal(value, light.state_dict()[key]), key
    train, test = split(tiny_cohort)
    for a, b, c in zip(
        model_predictions(model, train, test),
        model_predictions(loaded.eval(), train, test),
        model_predictions(light, train, test),
        strict=True,
    ):
        assert a.equals(b) and a.equals(c)
    batch = model.scale(batch_of(tiny_cohort, range(8)))
    with torch.no_grad():
        want = model.loss_terms(batch, sample=False)
        got = loaded.loss_terms(batch, sample=False)
    assert want.keys() == got.keys()
    for key in want:
        assert torch.equal(want[key], got[key]), key


def test_checkpoint_of_the_earliest_flat_module_takes_the_defaults(
    tiny_cohort, tmp_path
):
    """Checkpoints from before ``time_scale``, the history encoder and the later
    penalties: those settings take the defaults (the behaviour of the time)."""
    old = {
        k: v
        for k, v in FLAT.items()
        if k
        not in {
            "time_scale",
            "free_bits",
            "param_l2",
            "param_group_lasso",
            "own_reconstruction_weight",
            "history",
            "history_hidden",
            "history_kl_weight",
            "forecast_weight",
        }
    }
    torch.manual_seed(0)
    model = trained_a_little(
        ODEVAE(p=tiny_cohort.p, q=tiny_cohort.q, **old), tiny_cohort
    )
    flat_checkpoint(
        model, {"p": tiny_cohort.p, "q": tiny_cohort.q, **old}, tmp_path / "old.ckpt"
    )
    loaded = ODEVAE.load_from_checkpoint(tmp_path / "old.ckpt", map_location="cpu")
    assert loaded.time_scale == 1.0 and loaded.core.history_encoder is None
    for key in ("param_l2", "own_reconstruction_weight", "free_bits"):
        assert loaded.hparams.loss[key] == LOSS_DEFAULTS[key] == 0.0
    train, test = split(tiny_cohort)
    a, _ = model_predictions(model, train, test)
    b, _ = model_predictions(loaded.eval(), train, test)
    assert a.equals(b)


def test_checkpoints_store_the_filled_in_sections(tiny_cohort, tiny_config, tmp_path):
    """The hyperparameters are the ``model`` and ``loss`` sections with every
    setting (the data settings of ``model`` left out), and they load back."""
    model = build_model(tiny_cohort, tiny_config["model"], tiny_config["loss"], 1e-3)
    hp = model.hparams
    assert set(hp) == {"p", "q", "model", "loss", "lr", "binary", "time_scale"}
    assert hp.model.keys() == MODEL_DEFAULTS.keys()
    assert hp.loss == tiny_config["loss"]
    trainer = L.Trainer(logger=False, enable_progress_bar=False, max_epochs=0)
    trainer.strategy.connect(model)
    trainer.save_checkpoint(tmp_path / "new.ckpt")
    loaded = ODEVAE.load_from_checkpoint(tmp_path / "new.ckpt", map_location="cpu")
    light = load_trained(tmp_path / "new.ckpt")
    assert loaded.hparams == hp == vars(light.hparams)
    for key, value in model.state_dict().items():
        assert torch.equal(value, loaded.state_dict()[key]), key
        assert torch.equal(value, light.state_dict()[key]), key


def test_unknown_settings_are_named():
    with pytest.raises(ValueError, match="unknown loss setting 'kl_wieght'"):
        ODEVAE(p=2, q=1, loss={"kl_wieght": 0.1})
    with pytest.raises(ValueError, match="unknown model.neural setting 'width'"):
        ODEVAE(p=2, q=1, model={"neural": {"width": 3}})
    with pytest.raises(ValueError, match="unknown loss 'elbo'"):
        ODEVAE(p=2, q=1, loss="elbo")
