import numpy as np
import pytest

from odevae.data.simulate import (
    linear_solution,
    simulate_cohort,
    time_grid,
    write_cohort,
)
from odevae.errors import InputError
from tests.conftest import TABLES, merge


def test_shapes_and_visit_times(default_config):
    cfg = default_config["simulation"]
    sim = simulate_cohort(cfg, seed=3)
    visits = sim.visits
    assert list(visits.columns) == ["patient_id", "time"] + [
        f"x{j}" for j in range(1, 11)
    ]
    assert sim.baseline.shape == (100, 51)
    counts = visits.groupby("patient_id").size()
    assert len(counts) == 100
    assert counts.between(2, cfg["maxntps"] + 1).all()  # baseline + 1..maxntps
    first = visits.groupby("patient_id")["time"].first()
    assert (first == 0).all()
    follow = visits[visits["time"] > 0]["time"]
    assert follow.between(cfg["t_start"], cfg["t_end"]).all()
    grid = time_grid(cfg["t_start"], cfg["t_end"], cfg["dt"])
    assert np.isin(np.round(follow, 10), grid).all()
    # sorted and (times_with_replacement: false) distinct within each patient
    for _, part in visits.groupby("patient_id"):
        assert part["time"].is_monotonic_increasing and part["time"].is_unique


def test_same_seed_same_bytes_other_seed_differs(default_config, tmp_path):
    cfg = default_config["simulation"]

    def written(seed, folder):
        folder.mkdir()
        paths = {key: folder / f"{key}.tsv" for key in TABLES}
        write_cohort(simulate_cohort(cfg, seed), paths)
        return {key: path.read_bytes() for key, path in paths.items()}

    a, b, c = (written(s, tmp_path / n) for s, n in ((7, "a"), (7, "b"), (8, "c")))
    assert a == b
    assert a["visits"] != c["visits"] and a["baseline"] != c["baseline"]


def test_groups_balanced_and_measurements_follow_their_latent_dimension(default_config):
    cfg = merge(default_config["simulation"], {"sigma_ind": 0.05, "sigma_var": 0.0})
    sim = simulate_cohort(cfg, seed=11)
    truth = sim.truth_patients.set_index("patient_id")
    assert truth["group"].value_counts().to_dict() == {1: 50, 2: 50}
    assert (truth.loc[truth["group"] == 2, "a22"] == 0.2).all()
    u0 = np.array(cfg["u0"])
    for _, row in sim.visits.iterrows():
        g = truth.loc[row["patient_id"], "group"]
        A = np.array(cfg["groups"][g - 1]["A"])
        u = linear_solution(A, u0, [row["time"]])[0]
        x = row[[f"x{j}" for j in range(1, 11)]].to_numpy(float)
        # first p/2 variables from u1, the rest from u2, up to noise sd 0.05
        assert np.abs(x[:5] - u[0]).max() < 0.3
        assert np.abs(x[5:] - u[1]).max() < 0.3


def test_trueparams_covariates_carry_group_parameters(default_config):
    sim = simulate_cohort(default_config["simulation"], seed=5)
    base = sim.baseline.merge(sim.truth_patients, on="patient_id")
    for group, a22 in ((1, -0.2), (2, 0.2)):
        part = base[base["group"] == group]
        assert abs(part[[f"z{k}" for k in range(1, 6)]].to_numpy().mean() + 0.2) < 0.05
        assert abs(part[[f"z{k}" for k in range(6, 11)]].to_numpy().mean() - a22) < 0.05
        assert abs(part[[f"z{k}" for k in range(11, 51)]].to_numpy().mean()) < 0.05


def test_groupsonly_covariates(default_config):
    cfg = merge(default_config["simulation"], {"baseline": {"mode": "groupsonly"}})
    sim = simulate_cohort(cfg, seed=5)
    base = sim.baseline.merge(sim.truth_patients, on="patient_id")
    info = [f"z{k}" for k in range(1, 11)]
    m1 = base.loc[base["group"] == 1, info].to_numpy()
    m2 = base.loc[base["group"] == 2, info].to_numpy()
    assert abs(m1.mean() + 1) < 0.2 and abs(m2.mean() - 1) < 0.2
    assert 0.8 < m1.std() < 1.2  # sigma_info defaults to 1 in this mode


def test_truth_trajectories_solve_the_ode(default_config):
    sim = simulate_cohort(default_config["simulation"], seed=1)
    traj = sim.truth_trajectories
    g2 = traj[traj["group"] == 2]
    np.testing.assert_allclose(g2["u1"], 2 * np.exp(-0.2 * g2["time"]), rtol=1e-9)
    np.testing.assert_allclose(g2["u2"], np.exp(0.2 * g2["time"]), rtol=1e-9)


@pytest.mark.parametrize(
    ("override", "key"),
    [
        ({"groups": [{"A": [[0.1]]}, {"A": [[0.2]]}]}, "simulation.groups[0].A"),
        ({"p": 5}, "simulation.p"),
        ({"q_info": 60}, "simulation.q_info"),
        ({"q_info": 5}, "simulation.q_info"),
        ({"baseline": {"informative_params": ["a33"]}}, "informative_params"),
        ({"maxntps": 200}, "simulation.maxntps"),
    ],
)
def test_inconsistent_config_names_the_key(default_config, override, key):
    cfg = merge(default_config["simulation"], override)
    with pytest.raises(InputError, match=key.replace("[", r"\[").replace("]", r"\]")):
        simulate_cohort(cfg, seed=0)
