"""The instance transition table: every allowed and every forbidden (state, event) pair."""

from __future__ import annotations

import pytest

from controller.instances.lifecycle import EVENTS, STATES, TRANSITIONS, Forbidden, allowed, apply

# The table as docs/decisions.md states it: (state, event) -> new state; absent pairs are forbidden.
EXPECTED = {
    ("unknown", "report_active"): "active", ("unknown", "report_inactive"): "inactive",
    ("unknown", "stale"): "unknown", ("unknown", "lost"): "down",
    ("unknown", "alive"): "unknown", ("unknown", "attached"): "unknown",
    ("unknown", "drain"): "draining",
    ("active", "report_active"): "active", ("active", "report_inactive"): "inactive",
    ("active", "stale"): "unknown", ("active", "lost"): "down", ("active", "alive"): "active",
    ("active", "attached"): "active", ("active", "drain"): "draining",
    ("inactive", "report_active"): "active", ("inactive", "report_inactive"): "inactive",
    ("inactive", "stale"): "inactive", ("inactive", "lost"): "inactive",
    ("inactive", "alive"): "inactive", ("inactive", "attached"): "inactive",
    ("inactive", "activate"): "activating",
    ("activating", "report_active"): "active", ("activating", "report_inactive"): "activating",
    ("activating", "stale"): "activating", ("activating", "lost"): "activating",
    ("activating", "alive"): "activating", ("activating", "attached"): "activating",
    ("activating", "activation_timeout"): "inactive",
    ("draining", "report_active"): "draining", ("draining", "report_inactive"): "inactive",
    ("draining", "stale"): "draining", ("draining", "lost"): "down",
    ("draining", "alive"): "draining", ("draining", "attached"): "draining",
    ("draining", "drain"): "draining", ("draining", "undrain"): "active",
    ("down", "report_active"): "active", ("down", "report_inactive"): "inactive",
    ("down", "stale"): "down", ("down", "lost"): "down", ("down", "alive"): "unknown",
    ("down", "attached"): "unknown",
}


@pytest.mark.parametrize("state", STATES)
@pytest.mark.parametrize("event", EVENTS)
def test_every_pair_is_allowed_with_its_target_or_forbidden(state: str, event: str) -> None:
    """Each (state, event) pair either leads where the table says or raises Forbidden (409)."""
    if (state, event) in EXPECTED:
        assert allowed(state, event)
        assert apply(state, event) == EXPECTED[(state, event)]
    else:
        assert not allowed(state, event)
        with pytest.raises(Forbidden) as err:
            apply(state, event)
        assert state in str(err.value) and event in str(err.value)


def test_table_covers_exactly_the_expected_pairs() -> None:
    """No state or event outside the declared ones; the table is what the test states."""
    pairs = {(s, e) for s, row in TRANSITIONS.items() for e in row}
    assert pairs == set(EXPECTED)
    assert set(TRANSITIONS) == set(STATES)


def test_every_state_is_reachable_and_can_be_left() -> None:
    """No dead states: each state is some transition's target and has a way out."""
    targets = {t for t in EXPECTED.values()}
    assert targets == set(STATES)
    for state in STATES:
        assert any(EXPECTED[(state, e)] != state for e in EVENTS if (state, e) in EXPECTED)


def test_unknown_event_is_a_programming_error() -> None:
    """An event name outside EVENTS is rejected as a bug, not as a forbidden transition."""
    with pytest.raises(ValueError):
        apply("active", "explode")


def test_documented_table_is_the_code_table() -> None:
    """The transition table printed in docs/decisions.md is the one the controller applies."""
    from pathlib import Path

    doc = Path(__file__).resolve().parent.parent / "docs" / "decisions.md"
    lines = doc.read_text().splitlines()
    start = next(i for i, ln in enumerate(lines) if ln.startswith("| from \\ event |"))
    events = [c.strip().strip("`") for c in lines[start].split("|")[2:-1]]
    seen = {}
    for row in lines[start + 2:start + 2 + len(STATES)]:
        cells = [c.strip() for c in row.split("|")[1:-1]]
        state = cells[0].strip("`")
        for event, cell in zip(events, cells[1:], strict=True):
            if cell != "✗":
                seen[(state, event)] = state if cell == "·" else cell
    assert seen == EXPECTED
