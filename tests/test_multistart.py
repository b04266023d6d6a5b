"""The statistical (multi-start) loss against a direct loop-based reference."""

import itertools

import numpy as np
import pytest
import torch

from odevae.model.loss import (
    VAR_CLAMP,
    combine_history,
    combine_local_solutions,
    multistart_mu_penalty,
    variance_penalty,
)
from odevae.model.module import ODEVAE
from odevae.model.systems import SYSTEM_NAMES
from tests.conftest import batch_of


def _case(seed=0):
    """Local solutions of 3 patients with 4, 3 and 1 real visits (padded to 4)."""
    gen = torch.Generator().manual_seed(seed)
    B, T, d = 3, 4, 2
    local = torch.randn(B, T, T, d, generator=gen, dtype=torch.float64)
    visits = torch.tensor([[1, 1, 1, 1], [1, 1, 1, 0], [1, 0, 0, 0]], dtype=torch.bool)
    mu = torch.diagonal(local, dim1=1, dim2=2).permute(0, 2, 1)  # local[j, j] = μ_j
    return local, mu, visits


def _clamp(v):
    return min(max(v, VAR_CLAMP[0]), VAR_CLAMP[1])


def reference_combined(local, visits, weighting, skip_own):
    """Combined means by loops over the real visits (``visits`` may have gaps):
    start k's set for target j is the real visits between them."""
    out = np.zeros(local.shape[:1] + local.shape[2:])
    for b in range(local.shape[0]):
        real = np.flatnonzero(visits[b])
        for j, dim in itertools.product(real, range(local.shape[-1])):
            starts = [k for k in real if not (skip_own and k == j)]
            if not starts:
                out[b, j, dim] = local[b, j, j, dim]
                continue
            num = den = 0.0
            for k in starts:
                if weighting:
                    lo, hi = min(k, j), max(k, j)
                    between = real[(real >= lo) & (real <= hi)]
                    vals = [float(local[b, m, j, dim]) for m in between]
                    w = 1.0 / _clamp(np.var(vals, ddof=1))
                else:
                    w = 1.0
                num += w * float(local[b, k, j, dim])
                den += w
            out[b, j, dim] = num / den
    return out


@pytest.mark.parametrize(
    "weighting,skip_own", [(True, True), (False, True), (False, False)]
)
def test_combined_means_match_the_loop_reference(weighting, skip_own):
    local, _, visits = _case()
    got = combine_local_solutions(local, visits, weighting, skip_own)
    want = reference_combined(local.numpy(), visits.numpy(), weighting, skip_own)
    for b in range(3):
        T = int(visits[b].sum())
        np.testing.assert_allclose(got[b, :T].numpy(), want[b, :T], atol=1e-6, rtol=0)


def test_combined_means_with_gaps_in_the_visits_mask():
    """Real visits need not come first: the sets skip the empty slots."""
    local, _, _ = _case(seed=3)
    visits = torch.tensor([[1, 0, 1, 1], [0, 1, 1, 0], [1, 0, 0, 1]], dtype=torch.bool)
    got = combine_local_solutions(local, visits, weighting=True, skip_own=True)
    want = reference_combined(local.numpy(), visits.numpy(), True, True)
    real = visits.numpy()
    np.testing.assert_allclose(got.numpy()[real], want[real], atol=1e-10, rtol=0)


def test_weighting_without_skipping_is_rejected():
    local, _, visits = _case()
    with pytest.raises(ValueError, match="skip_own"):
        combine_local_solutions(local, visits, weighting=True, skip_own=False)


def test_mu_penalty_matches_the_loop_reference():
    local, _, visits = _case()
    mu = torch.randn(3, 4, 2, dtype=torch.float64)
    got = multistart_mu_penalty(local, mu, visits)
    for b in range(3):
        T = int(visits[b].sum())
        total = sum(
            float(torch.linalg.vector_norm(local[b, k, j] - mu[b, j]))
            for k in range(T)
            for j in range(T)
            if j != k
        )
        assert float(got[b]) == pytest.approx(total / T**2, abs=1e-6)


@pytest.mark.parametrize("kind", ["log_diff", "ratio_sum", "sum_ratio"])
def test_variance_penalty_matches_the_loop_reference(kind):
    local, _, visits = _case(seed=4)
    mu = torch.randn(3, 4, 2, dtype=torch.float64)
    off = 0.1
    got = variance_penalty(local, mu, visits, kind, off, skip_own=True)
    for b in range(3):
        T = int(visits[b].sum())
        if T < 3:  # a target needs two starts besides itself
            assert float(got[b]) == 0.0
            continue
        V = np.array(
            [
                [
                    _clamp(
                        np.var([local[b, k, j, d] for k in range(T) if k != j], ddof=1)
                    )
                    for d in range(2)
                ]
                for j in range(T)
            ]
        )
        E = np.array([_clamp(np.var(mu[b, :T, d].numpy(), ddof=1)) for d in range(2)])
        if kind == "log_diff":
            want = np.sum(np.log(V + off).mean(0) - np.log(E + off))
        elif kind == "ratio_sum":
            want = np.sum(((V + off) / (E + off)).mean(0))
        else:
            want = np.sum(V.mean(0) + off) / np.sum(E + off)
        assert float(got[b]) == pytest.approx(want, abs=1e-6)


def test_statistical_loss_matches_a_per_patient_reference(tiny_cohort):
    torch.manual_seed(0)
    model = ODEVAE(p=tiny_cohort.p, q=tiny_cohort.q, loss="statistical").double()
    batch = {
        k: v.double() if v.is_floating_point() else v
        for k, v in batch_of(tiny_cohort, range(6)).items()
    }
    terms = model.loss_terms(batch, sample=False)
    out = model(batch)
    hp = model.hparams
    per_patient = []
    for b in range(6):
        T = int(batch["visits"][b].sum())
        one = {
            k: v[b : b + 1, :T] if v.dim() > 1 else v[b : b + 1]
            for k, v in batch.items()
        }
        one["baseline"] = batch["baseline"][b : b + 1]
        alone = model.loss_terms(one, sample=False)["per_patient"]
        per_patient.append(float(alone.detach()))
        assert float(terms["per_patient"][b].detach()) == pytest.approx(
            per_patient[-1], abs=1e-8
        )
    l2 = sum(float((w.detach() ** 2).sum()) for w in model.core.decoder.parameters())
    expected = np.mean(per_patient) + hp.loss["decoder_l2"] * l2
    assert float(terms["loss"].detach()) == pytest.approx(expected, abs=1e-8)
    assert out["mu_enc"].shape[1] == batch["visits"].shape[1]


@pytest.mark.parametrize(
    "system,loss",
    list(itertools.product(SYSTEM_NAMES, ["initial_value", "statistical"])),
)
def test_every_system_and_loss_trains(system, loss, tiny_cohort):
    torch.manual_seed(0)
    model = ODEVAE(
        p=tiny_cohort.p, q=tiny_cohort.q, system=system, loss=loss, rtol=1e-4, atol=1e-5
    )
    opt = model.configure_optimizers()
    batch = batch_of(tiny_cohort, range(8))
    losses = []
    for _ in range(3):
        opt.zero_grad()
        terms = model.loss_terms(batch, sample=True)
        terms["loss"].backward()
        assert torch.isfinite(terms["loss"])
        for name, param in model.named_parameters():
            assert param.grad is not None and torch.isfinite(param.grad).all(), name
        assert any(p.grad.abs().sum() > 0 for p in model.core.param_net.parameters())
        opt.step()
        losses.append(float(terms["loss"].detach()))
    assert losses[0] != losses[-1]


def reference_history(local, history):
    """combine_history's weighted mean by loops: start k's set is the history
    visits from k to the last (the last start: the last two)."""
    out = np.zeros((local.shape[0], local.shape[2]))
    for i in range(local.shape[0]):
        slots = np.flatnonzero(history[i])
        h = len(slots)
        for dim in range(local.shape[2]):
            x = local[i, slots, dim]
            if h < 2:
                out[i, dim] = x.mean()
                continue
            w = [1 / _clamp(np.var(x[min(r, h - 2) :], ddof=1)) for r in range(h)]
            out[i, dim] = np.dot(w, x) / np.sum(w)
    return out


def test_history_combination_matches_the_loop_reference():
    """Gappy history masks too (the sets follow the history visits' order)."""
    gen = torch.Generator().manual_seed(1)
    local = torch.randn(6, 5, 3, generator=gen, dtype=torch.float64)
    history = torch.tensor(
        [
            [1, 1, 1, 1, 1],
            [1, 1, 1, 0, 0],
            [1, 1, 0, 0, 0],
            [1, 0, 0, 0, 0],
            [1, 0, 1, 0, 1],
            [0, 1, 1, 0, 1],
        ],
        dtype=torch.bool,
    )
    got = combine_history(local, history, weighting=True)
    want = reference_history(local.numpy(), history.numpy())
    np.testing.assert_allclose(got.numpy(), want, rtol=1e-10)


def test_weights_keep_float32_precision_far_from_zero():
    """Local solutions spread by 1e-2 around 50 (variances about 1e-4, above the
    clamp): the combinations in float32 are those of float64 (variances from sums
    over a fixed origin would lose them to cancellation)."""
    gen = torch.Generator().manual_seed(2)
    local = 50.0 + 1e-2 * torch.randn(4, 6, 6, 2, generator=gen, dtype=torch.float64)
    visits = torch.ones(4, 6, dtype=torch.bool)
    visits[1, 4:] = False
    exact = combine_local_solutions(local, visits, weighting=True, skip_own=True)
    single = combine_local_solutions(local.float(), visits, True, True).double()
    np.testing.assert_allclose(single - 50, exact - 50, atol=2e-5)
    per_target = local[:, :, 3]  # (B, l, d): the solutions for target 3
    exact = combine_history(per_target, visits, weighting=True)
    single = combine_history(per_target.float(), visits, weighting=True).double()
    np.testing.assert_allclose(single - 50, exact - 50, atol=2e-5)
