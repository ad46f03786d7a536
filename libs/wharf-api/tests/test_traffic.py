"""Revisions and the canary split follow KServe's Knative traffic rules."""

from __future__ import annotations

from wharf_api.traffic import (
    RolloutState,
    TrafficTarget,
    after_traffic,
    revision_name,
    revisions_in_use,
    traffic_targets,
)

R1, R2, R3 = (revision_name("iris-predictor", n) for n in (1, 2, 3))


def test_revision_names_are_knatives() -> None:
    assert R1 == "iris-predictor-00001"


def test_no_traffic_before_a_revision_is_ready() -> None:
    assert traffic_targets(RolloutState(latest_created=R1), None) == ()


def test_first_revision_takes_everything_even_with_a_canary_percent() -> None:
    state = RolloutState(latest_created=R1, latest_ready=R1)
    targets = traffic_targets(state, 20)
    assert targets == (TrafficTarget(R1, 100, "latest", True),)
    assert after_traffic(state, targets).latest_rolledout == R1


def test_new_revision_gets_traffic_only_when_ready() -> None:
    state = RolloutState(latest_created=R2, latest_ready=R1, latest_rolledout=R1)
    assert traffic_targets(state, None) == (TrafficTarget(R1, 100, "latest", True),)
    assert revisions_in_use(state, traffic_targets(state, None)) == {R1, R2}


def test_blue_green_switch_rolls_out_and_drains_the_old_revision() -> None:
    state = RolloutState(latest_created=R2, latest_ready=R2, latest_rolledout=R1)
    targets = traffic_targets(state, None)
    assert targets == (TrafficTarget(R2, 100, "latest", True),)
    after = after_traffic(state, targets)
    assert (after.previous_rolledout, after.latest_rolledout) == (R1, R2)
    assert revisions_in_use(after, targets) == {R2}


def test_canary_splits_between_latest_and_last_rolled_out() -> None:
    state = RolloutState(latest_created=R2, latest_ready=R2, latest_rolledout=R1)
    targets = traffic_targets(state, 20)
    assert targets == (TrafficTarget(R2, 20, "latest", True), TrafficTarget(R1, 80, "prev", False))
    assert after_traffic(state, targets) == state
    assert revisions_in_use(state, targets) == {R1, R2}


def test_promotion_and_rollback() -> None:
    canary = RolloutState(latest_created=R2, latest_ready=R2, latest_rolledout=R1)
    promoted = after_traffic(canary, traffic_targets(canary, 100))
    assert (promoted.previous_rolledout, promoted.latest_rolledout) == (R1, R2)
    rollback = traffic_targets(canary, 0)
    assert rollback == (TrafficTarget(R2, 0, "latest", True), TrafficTarget(R1, 100, "prev", False))
    assert after_traffic(canary, rollback).latest_rolledout == R1


def test_a_third_revision_during_a_canary_replaces_the_canary() -> None:
    state = RolloutState(latest_created=R3, latest_ready=R3, latest_rolledout=R1)
    targets = traffic_targets(state, 20)
    assert {t.revision for t in targets} == {R1, R3}
    assert R2 not in revisions_in_use(state, targets)
