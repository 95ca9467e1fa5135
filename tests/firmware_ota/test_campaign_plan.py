"""Wave planning by grid topology, and the campaign state machine's decisions (pure code)."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from cloud.registry import GridPosition
from firmware_ota.campaign_logic import (
    CampaignState,
    Candidate,
    Policy,
    TargetState,
    WaveCounts,
    decide,
    judge,
)
from firmware_ota.campaign_plan import (
    UNASSIGNED,
    Grouping,
    PlanTarget,
    group_of,
    plan_waves,
)

S = CampaignState
targets_strategy = st.lists(
    st.tuples(st.integers(0, 999), st.sampled_from(["F1", "F2", "F3", "F4", "F5", "F6", UNASSIGNED])),
    max_size=80, unique_by=lambda t: t[0],
).map(lambda pairs: [PlanTarget(device=f"d{n:03d}", group=g, feeder=g) for n, g in pairs])


@settings(max_examples=150, deadline=None)
@given(targets=targets_strategy, max_groups=st.integers(1, 4), canary=st.integers(0, 5))
def test_waves_cover_every_target_once_and_never_span_too_many_groups(targets, max_groups, canary) -> None:
    waves = plan_waves(targets, max_groups_per_wave=max_groups, canary_size=canary)
    planned = [t.device for w in waves for t in w.targets]
    assert sorted(planned) == sorted(t.device for t in targets)
    assert len(planned) == len(set(planned))
    assert [w.index for w in waves] == list(range(len(waves)))
    for wave in waves:
        assert wave.targets, "no empty waves"
        assert len(wave.groups) <= max_groups
        assert {t.group for t in wave.targets} == set(wave.groups)
    if canary and targets:
        assert waves[0].canary and len(waves[0].groups) == 1 and 1 <= len(waves[0].targets) <= canary
    else:
        assert not any(w.canary for w in waves)
    # A group is never spread over more than two waves (the canary's and one more).
    for group in {t.group for t in targets}:
        assert sum(group in w.groups for w in waves) <= 2
    assert plan_waves(list(reversed(targets)), max_groups_per_wave=max_groups, canary_size=canary) == waves


def test_plan_refuses_bad_input() -> None:
    with pytest.raises(ValueError, match="twice"):
        plan_waves([PlanTarget("a", "F1"), PlanTarget("a", "F2")], max_groups_per_wave=1, canary_size=0)
    with pytest.raises(ValueError, match="at least 1"):
        plan_waves([], max_groups_per_wave=0, canary_size=0)


def test_group_of_each_level() -> None:
    grid = GridPosition(feeder="F1", transformer="T1", substation="S1")
    assert [group_of(grid, g) for g in Grouping] == ["S1", "T1", "F1"]
    assert group_of(None, Grouping.FEEDER) == UNASSIGNED
    assert group_of(GridPosition(substation="S1"), Grouping.FEEDER) == UNASSIGNED


POLICY = Policy(success_threshold=80, error_threshold=20, max_in_flight=3, max_in_flight_per_feeder=2)


def _decide(waves, *, state=S.RUNNING, current=0, candidates=(), per_feeder=None):
    return decide(state=state, reason=None, current_wave=current, policy=POLICY, waves=waves,
                  candidates=list(candidates), in_flight_per_feeder=per_feeder or {})


def test_decide_issues_within_limits_and_current_wave() -> None:
    waves = [WaveCounts(index=0, total=5, pending=5), WaveCounts(index=1, total=5, pending=5)]
    candidates = [Candidate(1, 0, "F1"), Candidate(2, 0, "F1"), Candidate(3, 0, "F1"), Candidate(4, 0, "F2"),
                  Candidate(5, 0, "F2"), Candidate(6, 1, "F3")]
    decision = _decide(waves, candidates=candidates)
    assert decision.issue == (1, 2, 4) and decision.state is S.RUNNING
    busy = _decide([WaveCounts(index=0, total=5, pending=3, in_flight=2)], candidates=candidates,
                   per_feeder={"F1": 2})
    assert busy.issue == (4,)


def test_decide_moves_to_next_wave_at_success_threshold() -> None:
    waves = [WaveCounts(index=0, total=5, succeeded=4, in_flight=1), WaveCounts(index=1, total=5, pending=5)]
    decision = _decide(waves, candidates=[Candidate(9, 1, "F3")])
    assert decision.current_wave == 1 and decision.issue == (9,)


def test_decide_stops_on_error_threshold_and_finishes() -> None:
    waves = [WaveCounts(index=0, total=4, succeeded=2, failed=1, in_flight=1), WaveCounts(index=1, total=5, pending=5)]
    stopped = _decide(waves)
    assert stopped.state is S.FAILED_THRESHOLD and "error threshold" in (stopped.reason or "")
    assert stopped.active and stopped.issue == ()
    # Once nothing is in flight a stopped campaign is no longer active.
    done = _decide([WaveCounts(index=0, total=4, succeeded=3, failed=1)], state=S.FAILED_THRESHOLD)
    assert not done.active
    finished = _decide([WaveCounts(index=0, total=2, succeeded=2), WaveCounts(index=1, total=1, succeeded=1)],
                       current=1)
    assert finished.state is S.FINISHED and not finished.active


def test_decide_does_not_issue_when_paused_and_cancels_pending() -> None:
    waves = [WaveCounts(index=0, total=3, pending=2, in_flight=1)]
    paused = _decide(waves, state=S.PAUSED, candidates=[Candidate(1, 0, None)])
    assert paused.issue == () and paused.active and paused.state is S.PAUSED
    cancelled = _decide(waves, state=S.CANCELLED)
    assert cancelled.cancel_pending and cancelled.active


def test_judge_outcomes() -> None:
    ok = judge(status="SUCCEEDED", result={"firmwareVersion": "2.1.0"}, error=None, attempts=1, max_attempts=3,
               expected_version="2.1.0")
    assert ok.state is TargetState.SUCCEEDED and ok.reported_version == "2.1.0"
    wrong = judge(status="SUCCEEDED", result={"firmwareVersion": "2.0.0"}, error=None, attempts=1, max_attempts=3,
                  expected_version="2.1.0")
    assert wrong.state is TargetState.FAILED and wrong.code == "VERSION_MISMATCH"
    failed = judge(status="FAILED", result=None, error={"code": "VERIFY_FAILED", "message": "crc"}, attempts=1,
                   max_attempts=3, expected_version="2.1.0")
    assert (failed.state, failed.code, failed.reason, failed.retry) == (TargetState.FAILED, "VERIFY_FAILED", "crc",
                                                                       False)
    again = judge(status="TIMEOUT", result=None, error=None, attempts=1, max_attempts=2, expected_version="x")
    assert again.state is TargetState.PENDING and again.retry
    given_up = judge(status="EXPIRED", result=None, error=None, attempts=2, max_attempts=2, expected_version="x")
    assert given_up.state is TargetState.FAILED and "gave up after 2" in (given_up.reason or "")
