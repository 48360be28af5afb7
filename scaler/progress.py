"""Progress of a long run, as words: the ETA of a search from the trials that ended in this run, and the lines
the CLI prints on stderr for each trial and, inside a training, for each epoch."""

from __future__ import annotations

import time

from scaler.tables import duration

PROGRESS_EVERY = 20  # steps between a training's checks of its loss and its progress reports (scaler.training)


class Eta:
    """Time left for a study: the mean time of the trials this run has ended, times the candidates left."""

    def __init__(self) -> None:
        self.started = time.monotonic()
        self.ended = 0

    def after_trial(self, done: int, total: int) -> float:
        """Seconds left, once one more trial has ended with `done` of `total` candidates done."""
        self.ended += 1
        return (time.monotonic() - self.started) / self.ended * max(0, total - done)


def search_line(record, done: int, total: int, eta: Eta, several_rules: bool) -> str:
    """One line as a compound search's trial ends (scaler.searches.compound_records.TrialRecord)."""
    top1 = f"top-1 {record.top1:.3f}" if record.top1 is not None else record.failure or record.state.lower()
    rule = f" ({record.stage_scaling})" if several_rules else ""
    return (f"trial {done}/{total}  {record.kind}{rule} alpha={record.alpha:g} beta={record.beta:g} "
            f"gamma={record.gamma:.3f}  {top1}  ETA {duration(eta.after_trial(done, total))}")


def baseline_search_line(record, done: int, total: int, eta: Eta) -> str:
    """One line as a baseline search's candidate ends (scaler.searches.baseline.BaselineTrial)."""
    score = f"top-1 {record.top1:.3f} reward {record.reward:.4f}" if record.top1 is not None else record.failure
    return (f"candidate {done}/{total} (trial {record.number})  {record.macs / 1e6:,.0f} MFLOPs  {record.stages}  "
            f"{score}  ETA {duration(eta.after_trial(done, total))}")


def epoch_line(progress) -> str:
    """One training's status (scaler.training.TrainingProgress)."""
    return (f"epoch {progress.epoch}/{progress.epochs}  step {progress.step}/{progress.steps}  "
            f"{progress.images_per_second:,.0f} img/s  ETA {duration(progress.eta_seconds)}")
