"""The trial attribute schema both searches write, and what a trial's state means for the study.

A trial's user attributes hold its candidate and what scoring it found. The engine's own attributes:

- `worker`: {host, pid, device} of the process that scores it (a lost worker is found by it);
- `failure`: why it did not finish, in words; `failure_kind`: which kind of failure (below);
- `copy_of`: a candidate proposed again takes trial N's score untrained;
- `top1_per_epoch`, `wall_seconds`, `images_per_second`, `params`, `macs`: what scoring found.

Failure kinds: the candidate's own (`oom`, `nonfinite`, `off_cost`: never trained again), an unexpected `error` (tried once
more per command), and bookkeeping that no table shows: `surplus` (another trial has the candidate), `infeasible`
(a proposal off the constraint), `outside` (a proposal outside the FLOPs band), `copy` (a repeated proposal, as
older studies recorded it). A trial without a failure that is FAIL lost its worker (killed, or gone silent).
"""

from __future__ import annotations

import optuna
from optuna.trial import FrozenTrial, TrialState

FINAL_FAILURES = ("oom", "nonfinite", "off_cost")  # the candidate's own (off_cost: no network at equal FLOPs,
# scaler.equal_cost): never trained again
SETTLED_FAILURES = (*FINAL_FAILURES, "error")  # an unexpected error is tried again once per command
HIDDEN = ("surplus", "infeasible", "outside", "copy")  # bookkeeping trials, left out of every table and count


class TrialFailure(Exception):
    """A trial that ends FAIL with its reason in the user attributes; the worker goes on."""


def hidden(trial: FrozenTrial) -> bool:
    """Bookkeeping, not a candidate's scoring: left out of every table and count."""
    return trial.user_attrs.get("failure_kind") in HIDDEN or "copy_of" in trial.user_attrs


def finished(trial: FrozenTrial, failures: tuple[str, ...] = SETTLED_FAILURES) -> bool:
    """Complete, pruned, or failed for one of `failures` (reasons of the candidate's own): not trained again."""
    return trial.state in (TrialState.COMPLETE, TrialState.PRUNED) or (
        trial.state == TrialState.FAIL and trial.user_attrs.get("failure_kind") in failures)


def pending(trial: FrozenTrial) -> bool:
    """Queued or being scored."""
    return trial.state in (TrialState.RUNNING, TrialState.WAITING)


def failure_text(trial: FrozenTrial) -> str | None:
    """Why a trial has no score, in words; None for a scored or unfinished trial."""
    if trial.state == TrialState.PRUNED:
        return f"pruned after epoch {len(trial.user_attrs.get('top1_per_epoch', []))}"
    failure = trial.user_attrs.get("failure")
    if trial.state == TrialState.FAIL and failure is None:
        return "worker lost"  # killed, or gone silent: found by process id or heartbeat
    return failure


def top1_per_epoch(trial: FrozenTrial) -> tuple[float, ...]:
    return tuple(trial.user_attrs.get("top1_per_epoch") or ())


def record_epoch(trial: optuna.Trial, per_epoch: list[float], top1: float) -> None:
    """Store the top-1 of one more epoch (a study shows a trial's learning curve while it trains)."""
    per_epoch.append(top1)
    trial.set_user_attr("top1_per_epoch", per_epoch)


STATE_ORDER = ("COMPLETE", "PRUNED", "RUNNING", "WAITING", "FAIL")  # the best a candidate's trials reached, first


def candidate_states(records, key) -> dict:
    """Each candidate's state: the best any of its trials reached (`key(record)` names the candidate). So a trial
    cut off and trained again by a later one leaves its candidate done, not failed, in every count."""
    states: dict = {}
    for r in records:
        k = key(r)
        if k not in states or STATE_ORDER.index(r.state) < STATE_ORDER.index(states[k]):
            states[k] = r.state
    return states
