"""FlatAdam: torch's Adam on the parameters as one flat tensor, the same numbers."""

import pytest
import torch

from odevae.model.flat_adam import FlatAdam
from odevae.model.module import ODEVAE
from tests.conftest import batch_of


def _train(tiny_cohort, flat: bool, steps: int = 25, **kwargs):
    torch.manual_seed(0)
    model = ODEVAE(p=tiny_cohort.p, q=tiny_cohort.q, lr=1e-2, **kwargs)
    if flat:
        optimiser = model.configure_optimizers()
        assert isinstance(optimiser, FlatAdam)
    else:
        optimiser = torch.optim.Adam(model.parameters(), lr=1e-2, foreach=True)
    for step in range(steps):
        batch = batch_of(
            tiny_cohort, [(step * 3 + i) % tiny_cohort.n for i in range(8)]
        )
        optimiser.zero_grad()
        model.loss_terms(model.scale(batch), sample=True)["loss"].backward()
        optimiser.step()
    return model


@pytest.mark.parametrize("kwargs", [{}, {"loss": "vae"}, {"model": {"history": "gru"}}])
def test_training_is_torchs_adam_bit_for_bit(tiny_cohort, kwargs):
    """Every weight after 25 steps equals torch's Adam's, including the parameter
    net that the VAE loss never gives a gradient (unchanged by both)."""
    plain = _train(tiny_cohort, flat=False, **kwargs)
    flat = _train(tiny_cohort, flat=True, **kwargs)
    initial = ODEVAE(p=tiny_cohort.p, q=tiny_cohort.q, **kwargs).state_dict()
    moved = 0
    for (name, a), (_, b) in zip(
        plain.state_dict().items(), flat.state_dict().items(), strict=True
    ):
        assert torch.equal(a, b), name
        moved += not torch.equal(a, initial[name])
    assert moved > 0


def test_parameters_stay_views_of_the_flat_tensor_and_load_into_it(tiny_cohort):
    """A loaded state dict lands in the tensor the optimiser updates."""
    model = ODEVAE(p=tiny_cohort.p, q=tiny_cohort.q)
    optimiser = model.configure_optimizers()
    other = ODEVAE(p=tiny_cohort.p, q=tiny_cohort.q).state_dict()
    model.load_state_dict({k: v + 1 for k, v in other.items()})
    flat = torch.cat([p.detach().reshape(-1) for p in model.parameters()])
    assert torch.equal(optimiser.flat.detach(), flat)
    assert optimiser.param_groups[0]["params"] == [optimiser.flat]


def test_no_parameters_is_an_error():
    with pytest.raises(ValueError, match="no parameters"):
        FlatAdam([torch.zeros(2)], lr=1e-3)
