"""Every exception scaler raises on purpose, in one family under ScalerError, and the checks that raise the
commonest one. A ScalerError itself is bad input (a wrong option, a malformed spec, an impossible request); its
subclasses say what else went wrong. The CLI prints any of them as one line and exits with `exit_status`."""

from __future__ import annotations

import math
import os
from pathlib import Path


class ScalerError(Exception):
    """Bad input from the user: a wrong option, a malformed spec, an impossible request (exit status 2)."""

    exit_status = 2
    label = "error"

    def line(self) -> str:
        """The one line the CLI prints."""
        return f"{self.label}: {self}"


class SpecError(ScalerError):
    """A spec that cannot describe a network; the message starts with the offending field."""


class TrainingError(ScalerError):
    """A training that could not finish; `reason` says why in one line."""

    exit_status = 1
    label = "training failed"

    def __init__(self, reason: str):
        super().__init__(reason)
        self.reason = reason


class OutOfMemory(TrainingError):
    """The device ran out of memory (the candidate, at this batch size, does not fit)."""


class NonFiniteLoss(TrainingError):
    """The loss became NaN or infinite (the candidate diverged)."""


class TrainingFailed(TrainingError):
    """Any other error inside a training."""


class StorageFailed(ScalerError):
    """The study's storage stopped answering mid-study for longer than a worker waits; what finished is kept."""

    exit_status = 1
    label = "storage failed"

    def line(self) -> str:
        first = str(self).strip().splitlines()[0] if str(self).strip() else "no answer"
        return f"{self.label}: {first}; what finished is kept: run the same command to go on"


class WorkerFailed(ScalerError):
    """A worker process of a search ended with an error; the study keeps what was done."""

    exit_status = 1
    label = "worker failed"

    def line(self) -> str:
        return str(self)


def check_int(name: str, value, minimum: int = 1, error: type[ScalerError] = ScalerError) -> int:
    """An integer (not a bool) of at least `minimum`, or `error` naming `name`."""
    if isinstance(value, bool) or not isinstance(value, int):
        raise error(f"{name}: expected an integer, got {value!r}")
    if value < minimum:
        raise error(f"{name}: must be at least {minimum}, got {value}")
    return value


def check_number(name: str, value, low: float = -math.inf, high: float = math.inf, *, above_low: bool = False,
                 below_high: bool = False, error: type[ScalerError] = ScalerError) -> float:
    """A finite number (not a bool) in [low, high]; `above_low`/`below_high` make either end open."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise error(f"{name}: expected a number, got {value!r}")
    too_low = value <= low if above_low else value < low
    too_high = value >= high if below_high else value > high
    if not math.isfinite(value) or too_low or too_high:
        bounds = f"{'(' if above_low else '['}{low:g}, {high:g}{')' if below_high else ']'}"
        raise error(f"{name}: must be a finite number in {bounds}, got {value!r}")
    return float(value)


def check_choice(name: str, value, choices, error: type[ScalerError] = ScalerError):
    if value not in choices:
        raise error(f"{name}: must be one of {', '.join(choices)}, got {value!r}")
    return value


def check_progressive(stages) -> int:
    """0 (off) or K >= 2 stages of progressive learning (scaler.training)."""
    check_int("progressive", stages, 0)
    if stages == 1:
        raise ScalerError("progressive: expected 0 (off) or at least 2 stages, got 1")
    return stages


def read_text(path: Path, label: str, error: type[ScalerError] = ScalerError) -> str:
    """A text file's contents, or one error that starts with `label` (the file as the user named it)."""
    try:
        return path.read_text()
    except OSError as failure:
        raise ScalerError(f"{label}: cannot read: {failure.strerror}") from None
    except UnicodeDecodeError:
        raise error(f"{label}: not a text file") from None


def check_output_file(path: str | Path, suffixes: tuple[str, ...]) -> Path:
    """A file to write, with one of `suffixes`, in a folder that exists and can be written: checked before any
    work, so that a long run never ends unable to save its result."""
    path = Path(path)
    if path.suffix.lower() not in suffixes:
        raise ScalerError(f"output: {path} must end in {', '.join(suffixes)}")
    folder = path.parent
    if not folder.is_dir():
        raise ScalerError(f"output: folder {folder} does not exist")
    if not os.access(folder, os.W_OK) or (path.exists() and not os.access(path, os.W_OK)) or path.is_dir():
        raise ScalerError(f"output: cannot write {path}: " + ("is a directory" if path.is_dir() else
                                                              "permission denied"))
    return path
