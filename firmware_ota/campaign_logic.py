"""The campaign state machine: pure decisions, no I/O.

The runner (:mod:`cloud.firmware.campaign_runner`) reads a campaign's counts and candidates from
the database, asks :func:`decide` what to do, and applies the answer with compare-and-set
updates; :func:`judge` turns one finished command into a target's outcome.

Campaign states: CREATED -> RUNNING <-> PAUSED; RUNNING/PAUSED -> CANCELLED; RUNNING ->
FAILED_THRESHOLD (a wave's failures passed the error threshold, or it ended below the success
threshold) or FINISHED (every wave done). Commands in flight when a campaign stops are still
followed and recorded; the campaign stays ``active`` until none is left.

Target states: PENDING -> IN_FLIGHT -> SUCCEEDED | FAILED, or back to PENDING for another
attempt after a timeout; PENDING -> CANCELLED when the campaign is cancelled.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any


class CampaignState(StrEnum):
    CREATED = "CREATED"
    RUNNING = "RUNNING"
    PAUSED = "PAUSED"
    CANCELLED = "CANCELLED"
    FAILED_THRESHOLD = "FAILED_THRESHOLD"
    FINISHED = "FINISHED"

    @property
    def final(self) -> bool:
        return self in (CampaignState.CANCELLED, CampaignState.FAILED_THRESHOLD, CampaignState.FINISHED)


class TargetState(StrEnum):
    PENDING = "PENDING"
    IN_FLIGHT = "IN_FLIGHT"
    SUCCEEDED = "SUCCEEDED"
    FAILED = "FAILED"
    CANCELLED = "CANCELLED"


# Operator actions: the states each may start from, and where it leads.
TRANSITIONS: Mapping[str, tuple[frozenset[CampaignState], CampaignState]] = {
    "start": (frozenset({CampaignState.CREATED}), CampaignState.RUNNING),
    "pause": (frozenset({CampaignState.RUNNING}), CampaignState.PAUSED),
    "resume": (frozenset({CampaignState.PAUSED}), CampaignState.RUNNING),
    "cancel": (frozenset({CampaignState.CREATED, CampaignState.RUNNING, CampaignState.PAUSED}),
               CampaignState.CANCELLED),
}

# Command outcomes worth another attempt: the device never answered, or said "try again".
RETRIED_STATUSES = frozenset({"TIMEOUT", "EXPIRED"})


@dataclass(frozen=True, slots=True)
class WaveCounts:
    """How a wave's targets stand."""

    index: int
    total: int
    pending: int = 0
    in_flight: int = 0
    succeeded: int = 0
    failed: int = 0
    cancelled: int = 0

    @property
    def open(self) -> int:
        return self.pending + self.in_flight

    def percent(self, count: int) -> float:
        return 100.0 * count / self.total if self.total else 100.0


@dataclass(frozen=True, slots=True)
class Policy:
    """A campaign's thresholds and limits."""

    success_threshold: int
    error_threshold: int
    max_in_flight: int
    max_in_flight_per_feeder: int


@dataclass(frozen=True, slots=True)
class Candidate:
    """A PENDING target that may be issued now (its retry wait is over)."""

    target_id: int
    wave: int
    feeder: str | None


@dataclass(frozen=True, slots=True)
class Decision:
    """What the runner does for a campaign this round."""

    state: CampaignState
    reason: str | None
    current_wave: int
    issue: tuple[int, ...] = ()
    cancel_pending: bool = False
    # False once the campaign is final and nothing is in flight: runners stop looking at it.
    active: bool = True


def decide(*, state: CampaignState, reason: str | None, current_wave: int, policy: Policy,
           waves: Sequence[WaveCounts], candidates: Sequence[Candidate],
           in_flight_per_feeder: Mapping[str | None, int]) -> Decision:
    """The next step for a campaign from its counts; ``candidates`` oldest wave first."""
    in_flight = sum(w.in_flight for w in waves)
    pending = sum(w.pending for w in waves)
    if state is not CampaignState.RUNNING:
        return Decision(state=state, reason=reason, current_wave=current_wave,
                        cancel_pending=state is CampaignState.CANCELLED and pending > 0,
                        active=not state.final or in_flight > 0 or (state is CampaignState.CANCELLED and pending > 0))
    by_index = {w.index: w for w in waves}
    # The error threshold is checked for every wave started so far: stragglers count too.
    for index in range(0, current_wave + 1):
        wave = by_index.get(index)
        if wave is not None and wave.total and wave.percent(wave.failed) > policy.error_threshold:
            why = (f"wave {index}: {wave.failed} of {wave.total} failed ({wave.percent(wave.failed):.0f}%), "
                   f"above the error threshold of {policy.error_threshold}%")
            return Decision(state=CampaignState.FAILED_THRESHOLD, reason=why, current_wave=current_wave,
                            active=in_flight > 0)
    last = max(by_index) if by_index else 0
    wave = by_index.get(current_wave)
    while wave is not None and current_wave < last and wave.percent(wave.succeeded) >= policy.success_threshold:
        current_wave += 1
        wave = by_index.get(current_wave)
    if wave is not None and wave.open == 0 and wave.percent(wave.succeeded) < policy.success_threshold:
        why = (f"wave {current_wave} ended with {wave.succeeded} of {wave.total} succeeded "
               f"({wave.percent(wave.succeeded):.0f}%), below the success threshold of {policy.success_threshold}%")
        return Decision(state=CampaignState.FAILED_THRESHOLD, reason=why, current_wave=current_wave,
                        active=in_flight > 0)
    if pending == 0 and in_flight == 0:
        done = sum(w.succeeded for w in waves)
        total = sum(w.total for w in waves)
        return Decision(state=CampaignState.FINISHED, reason=f"{done} of {total} devices updated",
                        current_wave=current_wave, active=False)
    return Decision(state=state, reason=reason, current_wave=current_wave,
                    issue=tuple(_pick(policy, current_wave, candidates, in_flight, in_flight_per_feeder)))


def _pick(policy: Policy, current_wave: int, candidates: Sequence[Candidate], in_flight: int,
          per_feeder: Mapping[str | None, int]) -> list[int]:
    budget = policy.max_in_flight - in_flight
    used = dict(per_feeder)
    chosen: list[int] = []
    for candidate in candidates:
        if budget <= 0:
            break
        if candidate.wave > current_wave:
            continue
        if used.get(candidate.feeder, 0) >= policy.max_in_flight_per_feeder:
            continue
        used[candidate.feeder] = used.get(candidate.feeder, 0) + 1
        chosen.append(candidate.target_id)
        budget -= 1
    return chosen


@dataclass(frozen=True, slots=True)
class Outcome:
    """What a finished command means for its target."""

    state: TargetState
    retry: bool = False
    code: str | None = None
    reason: str | None = None
    reported_version: str | None = None
    result: dict[str, Any] | None = field(default=None)


def judge(*, status: str, result: Mapping[str, Any] | None, error: Mapping[str, Any] | None,
          attempts: int, max_attempts: int, expected_version: str) -> Outcome:
    """A target's outcome from its command's final status, result and error."""
    if status == "SUCCEEDED":
        reported = (result or {}).get("firmwareVersion")
        if reported != expected_version:
            return Outcome(state=TargetState.FAILED, code="VERSION_MISMATCH",
                           reason=f"device reports firmware {reported!r} after the update, "
                                  f"expected {expected_version!r}",
                           reported_version=reported if isinstance(reported, str) else None,
                           result=dict(result or {}))
        return Outcome(state=TargetState.SUCCEEDED, reported_version=reported, result=dict(result or {}))
    code = str((error or {}).get("code") or status)
    reason = str((error or {}).get("message") or f"command ended {status}")
    transient = status in RETRIED_STATUSES or bool((error or {}).get("transient"))
    if transient and attempts < max_attempts:
        return Outcome(state=TargetState.PENDING, retry=True, code=code, reason=reason)
    if transient:
        reason = f"{reason} (gave up after {attempts} attempts)"
    return Outcome(state=TargetState.FAILED, code=code, reason=reason)
