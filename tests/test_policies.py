"""Selection policies: each one's shares and picks; dyncast unchanged; bad values rejected."""

from __future__ import annotations

from collections import Counter

import pytest

from controller.errors import ValidationError
from controller.model import SELECTION_POLICIES, Service, Weights, service_from_dict
from controller.selection.engine import POLICIES, CandidateInput, Chooser, Engine, decide

# CATS worked example: (compute, network) delays in ms; site1 least loaded, site2 nearest,
# site3 the best joint choice. site4 is down: no policy may choose it.
SITES = {"site1": (4.0, 9.0), "site2": (10.0, 4.0), "site3": (5.0, 5.0)}


def _inputs(extra: tuple[CandidateInput, ...] = ()) -> list[CandidateInput]:
    rows = [CandidateInput(name, "active", net, comp) for name, (comp, net) in SITES.items()]
    return [*rows, CandidateInput("site4", "down", 1.0, 1.0), *extra]


def _decide(policy: str, spread: float = 0.3, extra: tuple[CandidateInput, ...] = ()) -> dict:
    return decide(1, "svc", Weights(), _inputs(extra), spread, 4.0, 0.0,
                  policy=policy).shares


def test_engine_knows_exactly_the_policies_the_model_accepts() -> None:
    """Every policy a service may name has an implementation, and no other exists."""
    assert tuple(POLICIES) == SELECTION_POLICIES


def test_dyncast_is_the_default_and_unchanged() -> None:
    """Without a policy, the joint cost with spread and sharpness decides, as before."""
    default = decide(1, "svc", Weights(), _inputs(), 0.35, 4.0, 0.0)
    assert default.policy == "dyncast"
    assert set(default.shares) == {"site1", "site3"}  # 13 <= 13.5, 14 > 13.5
    assert abs(default.shares["site1"] / default.shares["site3"] - (10 / 13) ** 4) < 1e-9
    assert _decide("dyncast", spread=0.35) == default.shares


def test_nearest_takes_the_lowest_network_cost_only() -> None:
    """`nearest` gives every new flow to the instance with the lowest network cost."""
    d = decide(1, "svc", Weights(), _inputs(), 0.3, 4.0, 0.0, policy="nearest")
    assert d.shares == {"site2": 1.0}
    costs = {c.dbid: c.cost for c in d.candidates}
    assert costs == {"site1": 9.0, "site2": 4.0, "site3": 5.0, "site4": None}
    assert next(c.reason for c in d.candidates if c.dbid == "site3") == "not the nearest"


def test_least_loaded_takes_the_lowest_compute_cost_only() -> None:
    """`least-loaded` gives every new flow to the instance with the lowest compute cost."""
    assert _decide("least-loaded") == {"site1": 1.0}


def test_exact_ties_share_equally() -> None:
    """Two instances equally near (or equally loaded) split new flows half and half."""
    twin = (CandidateInput("site5", "active", 4.0, 4.0),)
    assert _decide("nearest", extra=twin) == {"site2": 0.5, "site5": 0.5}
    assert _decide("least-loaded", extra=twin) == {"site1": 0.5, "site5": 0.5}


@pytest.mark.parametrize("policy", ["round-robin", "random"])
def test_even_policies_give_equal_shares_to_every_usable_instance(policy: str) -> None:
    """`round-robin` and `random` ignore costs: every usable instance gets an equal share."""
    third = pytest.approx(1 / 3)
    assert _decide(policy) == {"site1": third, "site2": third, "site3": third}


@pytest.mark.parametrize("policy", SELECTION_POLICIES)
def test_every_policy_excludes_unusable_and_over_budget_instances(policy: str) -> None:
    """Down, unreachable and over-budget instances get nothing, whatever the policy."""
    rows = [*_inputs(), CandidateInput("far", "active", None, 0.5),
            CandidateInput("slow", "active", 0.1, 30.0)]
    d = decide(1, "svc", Weights(), rows, 0.3, 4.0, 0.0, budget_ms=15.0, policy=policy)
    assert set(d.shares) <= {"site1", "site2", "site3"} and d.shares
    assert "site4" not in d.shares and "far" not in d.shares and "slow" not in d.shares


@pytest.mark.parametrize("policy", SELECTION_POLICIES)
def test_every_policy_falls_back_to_stale_instances(policy: str) -> None:
    """With nothing active, every policy uses the `unknown` instances rather than dropping."""
    rows = [CandidateInput("a", "unknown", 2.0, 9.0), CandidateInput("b", "down", 1.0, 1.0)]
    assert decide(1, "svc", Weights(), rows, 0.3, 4.0, 0.0, policy=policy).shares == {"a": 1.0}


def test_round_robin_serves_instances_in_turn() -> None:
    """Round robin picks every usable instance once per round, in a fixed order."""
    engine = Engine(spread=0.3, sharpness=4.0, hysteresis=0.15)
    engine.update(1, "svc", Weights(), _inputs(), 0.0, policy="round-robin")
    picks = [engine.pick(1, "svc") for _ in range(9)]
    assert picks == ["site1", "site2", "site3"] * 3


def test_round_robin_rotation_survives_decision_updates() -> None:
    """A decision replaced between every two picks does not restart the rotation: each
    instance still gets an equal number of new flows."""
    engine = Engine(spread=0.3, sharpness=4.0, hysteresis=0.0)
    picks: Counter[str | None] = Counter()
    for step in range(300):
        scale = 1.0 + (step % 2)  # costs move at every step: a new decision each time
        rows = [CandidateInput(r.dbid, r.state, r.network_ms, r.compute_ms * scale)
                for r in _inputs()]
        assert engine.update(1, "svc", Weights(), rows, float(step), policy="round-robin")
        picks[engine.pick(1, "svc")] += 1
    assert picks == {"site1": 100, "site2": 100, "site3": 100}


def test_chooser_keeps_credit_across_replacement() -> None:
    """A chooser that replaces another continues its rotation instead of starting over."""
    first = Chooser({"a": 0.5, "b": 0.5})
    assert first.pick() == "a"
    assert Chooser({"a": 0.5, "b": 0.5}, previous=first).pick() == "b"


def test_random_picks_are_uniform_and_repeatable_per_seed() -> None:
    """`random` picks uniformly among usable instances; the same seed gives the same picks."""
    def run(seed: int) -> list[str | None]:
        engine = Engine(spread=0.3, sharpness=4.0, hysteresis=0.15, seed=seed)
        engine.update(1, "svc", Weights(), _inputs(), 0.0, policy="random")
        return [engine.pick(1, "svc") for _ in range(3000)]

    picks = run(7)
    assert picks == run(7) and picks != run(8)
    counts = Counter(picks)
    assert set(counts) == {"site1", "site2", "site3"}
    assert all(900 < n < 1100 for n in counts.values()), counts
    assert picks[:12] != ["site1", "site2", "site3"] * 4  # not a rotation


def test_changing_the_policy_replaces_the_decision_at_once() -> None:
    """A new policy takes effect at the next recompute even when no cost moved."""
    engine = Engine(spread=0.3, sharpness=4.0, hysteresis=0.15)
    engine.update(1, "svc", Weights(), _inputs(), 0.0)
    assert engine.decisions[(1, "svc")].primary == "site3"
    assert engine.update(1, "svc", Weights(), _inputs(), 1.0, policy="nearest")
    assert engine.decisions[(1, "svc")].shares == {"site2": 1.0}
    assert engine.decisions[(1, "svc")].to_dict()["policy"] == "nearest"


def test_unknown_policy_is_refused_by_the_engine() -> None:
    """The engine refuses a policy it does not know, naming the known ones."""
    with pytest.raises(ValueError, match="least-loaded"):
        decide(1, "svc", Weights(), _inputs(), 0.3, 4.0, 0.0, policy="fastest")


def test_service_policy_parses_and_round_trips() -> None:
    """A service's policy is read from its table and written back; dyncast is the default."""
    base = {"name": "svc", "dsid": "10.0.100.9"}
    assert service_from_dict(base).policy == "dyncast"
    svc = service_from_dict({**base, "policy": "least-loaded"})
    assert svc.policy == "least-loaded"
    assert service_from_dict(svc.to_dict()) == svc
    assert Service("svc", "10.0.100.9") == service_from_dict(base)


@pytest.mark.parametrize("bad", ["fastest", "Dyncast", "", 3, None, ["random"]])
def test_bad_policy_is_rejected_naming_the_field_and_the_choices(bad: object) -> None:
    """An unknown policy is a ValidationError naming `policy` and listing the allowed values."""
    with pytest.raises(ValidationError) as err:
        service_from_dict({"name": "svc", "dsid": "10.0.100.9", "policy": bad},
                          "service[0].")
    assert err.value.field == "service[0].policy"
    assert all(name in str(err.value) for name in SELECTION_POLICIES)
