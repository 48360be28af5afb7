"""The one exception family a user can cause, and the checks that raise it. The CLI turns a ScalerError into
one line on stderr and exit status 2."""

from __future__ import annotations

import math
import os
from pathlib import Path


class ScalerError(ValueError):
    """Bad input from the user: a wrong option, a malformed spec, an impossible request."""


class SpecError(ScalerError):
    """A spec that cannot describe a network; the message starts with the offending field."""


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
