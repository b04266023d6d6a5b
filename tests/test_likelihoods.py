"""Per-variable likelihoods (Bernoulli for 0/1 measurements, Gaussian otherwise)
and the KL term."""

import dataclasses
import math

import numpy as np
import pytest
import torch

from odevae.errors import InputError
from odevae.evaluate.prediction.latent import decode
from odevae.model.loss import gaussian_nll, kl_standard_normal, observation_nll
from odevae.model.module import ODEVAE
from odevae.train.data import binary_measurements, scaling_stats


def test_bernoulli_term_is_the_log_loss_of_the_logit():
    x = torch.tensor([[[1.0, 0.3], [0.0, -1.0]]])
    mean = torch.tensor([[[2.0, 0.5], [2.0, 0.0]]])
    logvar = torch.zeros_like(mean)
    observed = torch.ones_like(x, dtype=torch.bool)
    binary = torch.tensor([True, False])
    nll = observation_nll(x, mean, logvar, observed, binary, per_visit=True)
    p = 1 / (1 + math.exp(-2.0))
    gauss = gaussian_nll(
        x[..., 1:], mean[..., 1:], logvar[..., 1:], observed[..., 1:], True
    )
    expected = torch.tensor([[-math.log(p), -math.log(1 - p)]]) + gauss
    torch.testing.assert_close(nll, expected.float())
    none = observation_nll(x, mean, logvar, observed, torch.tensor([False, False]))
    torch.testing.assert_close(none, gaussian_nll(x, mean, logvar, observed))


def test_one_likelihood_for_all_measurements_gives_the_flags_numbers_exactly():
    """A cohort without (or with only) 0/1 measurements skips the other
    likelihood: the same values and gradients, bit for bit, as the flags."""
    torch.manual_seed(0)
    x = torch.randn(4, 3, 2).clamp(0, 1).round()
    observed = torch.rand(4, 3, 2) > 0.3
    for flag in (False, True):
        results = []
        for binary in (flag, torch.tensor([flag, flag])):
            mean = torch.randn(4, 3, 2, generator=torch.Generator().manual_seed(1))
            logvar = torch.randn(4, 3, 2, generator=torch.Generator().manual_seed(2))
            mean.requires_grad_(), logvar.requires_grad_()
            nll = observation_nll(x, mean, logvar, observed, binary, per_visit=True)
            (nll**2).sum().backward()
            results.append((nll, mean.grad, logvar.grad))
        for fast, flags in zip(*results, strict=True):
            if fast is None:  # all 0/1: the log-variances get no gradient at all
                fast = torch.zeros_like(flags)
            assert torch.equal(fast, flags)
    assert ODEVAE(p=2, q=1).core.likelihoods is False
    assert ODEVAE(p=2, q=1, binary=[True, True]).core.likelihoods is True
    mixed = ODEVAE(p=2, q=1, binary=[True, False]).core
    assert torch.equal(mixed.likelihoods, torch.tensor([True, False]))
    gaussian = ODEVAE(p=2, q=1).core
    gaussian.load_state_dict(mixed.state_dict())  # the loaded flags decide
    assert torch.equal(gaussian.likelihoods, torch.tensor([True, False]))


def test_auto_detects_exactly_the_zero_one_measurements(tiny_cohort):
    values = tiny_cohort.values.copy()
    rng = np.random.default_rng(0)
    values[..., 0] = rng.integers(0, 2, size=values.shape[:2])  # 0/1
    values[..., 1] = rng.integers(0, 3, size=values.shape[:2]) / 2  # 0, 0.5, 1
    values[..., 2] = 1.0  # constant
    cohort = dataclasses.replace(tiny_cohort, values=values)
    assert binary_measurements(cohort, "auto") == [True, False, False, False]
    assert binary_measurements(cohort, "none") == [False] * 4
    assert binary_measurements(cohort, ["x2"]) == [False, True, False, False]
    with pytest.raises(InputError, match="model.binary_measurements.*'x9'"):
        binary_measurements(cohort, ["x9"])
    x_mean, x_std, *_ = scaling_stats(cohort, True, False, [True, False, False, False])
    assert (x_mean[0], x_std[0]) == (0.0, 1.0)  # 0/1 kept for the Bernoulli term
    assert x_std[3] != 1.0


def test_decoded_bernoulli_variable_is_a_probability_with_its_sd():
    torch.manual_seed(0)
    model = ODEVAE(p=3, q=2, binary=[False, True, False]).eval()
    model.set_scaling(np.full(3, 5.0), np.full(3, 2.0), np.zeros(2), np.ones(2))
    mean, sd = decode(model, torch.randn(6, 2))
    assert ((mean[:, 1] > 0) & (mean[:, 1] < 1)).all()
    np.testing.assert_allclose(sd[:, 1], np.sqrt(mean[:, 1] * (1 - mean[:, 1])))
    assert (np.abs(mean[:, 0] - 5.0) > 0).all()  # Gaussian: unscaled back to units


def test_free_bits_floor_each_dimensions_kl_and_stop_its_pull_to_the_prior():
    mean = torch.tensor([[[0.0, 2.0]]], requires_grad=True)  # dim 1 on the prior
    logvar = torch.zeros(1, 1, 2)
    visits = torch.ones(1, 1, dtype=torch.bool)
    plain = kl_standard_normal(mean, logvar, visits)
    assert plain.item() == pytest.approx(2.0)  # 0.5 * 2² from dim 2 only
    floored = kl_standard_normal(mean, logvar, visits, free_bits=0.5)
    assert floored.item() == pytest.approx(2.5)  # dim 1 counted at the floor
    (grad,) = torch.autograd.grad(floored.sum(), mean)
    assert grad[0, 0, 0] == 0 and grad[0, 0, 1] == pytest.approx(2.0)
    # a dimension above the floor keeps its KL and its gradient
    above = kl_standard_normal(mean, logvar, visits, free_bits=1.5)
    assert above.item() == pytest.approx(3.5)
