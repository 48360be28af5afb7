"""Ctrl-C in a worker loop, taken only where it loses nothing.

Inside an `interruptible` stretch (a trial's scoring, loading the data) a Ctrl-C is taken at once: the engine
records the trial as interrupted, to be trained again. Elsewhere, inside Optuna's own bookkeeping, it waits for
the next safe point: a Ctrl-C inside `study.ask`, after it took a queued trial and before the trial named its
worker, left that trial RUNNING with no owner, so no command ever trained it again. Nor is a storage write cut in
half inside a stretch: a Ctrl-C inside a journal file's lock release left the release half done, and the worker
ended in a FileNotFoundError traceback instead of recording its trial as interrupted.
"""

from __future__ import annotations

import os
import signal
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import optuna.storages

STORAGE_CODE = str(Path(optuna.storages.__file__).parent)  # Optuna's storages: their writes are never cut in half
RETRY_SECONDS = 0.05  # how soon a Ctrl-C that came inside a storage call is delivered again


class _Interrupt:
    """Where a worker is with Ctrl-C: `live` inside an `interruptible` stretch (where it is taken at once),
    `pending` when one came outside it and waits for a safe point."""
    live = False
    pending = False


@contextmanager
def safe_interrupts() -> Iterator[None]:
    """A worker loop's Ctrl-C, taken only where it loses nothing: at once where `interruptible` (a trial's scoring,
    which `run_owned` records on the trial), else at the next such stretch or the loop's next step. Optuna's
    own bookkeeping is never cut in half: a Ctrl-C inside `study.ask`, after it took a queued trial and before the
    trial named its worker, left that trial RUNNING with no owner, so no command ever trained it again."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def on_interrupt(signum, frame):
        if _Interrupt.live and not in_storage_call(frame):
            _Interrupt.pending = False
            raise KeyboardInterrupt
        _Interrupt.pending = True
        if _Interrupt.live:  # inside a storage call: delivered again until it comes after the call
            retry = threading.Timer(RETRY_SECONDS, deliver_again)
            retry.daemon = True
            retry.start()

    previous = signal.signal(signal.SIGINT, on_interrupt)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)
    take_interrupt()


def in_storage_call(frame) -> bool:
    """Whether the code running at `frame` is inside one of Optuna's storages (a lock, a transaction)."""
    while frame is not None:
        if frame.f_code.co_filename.startswith(STORAGE_CODE):
            return True
        frame = frame.f_back
    return False


def deliver_again() -> None:
    """Send this process the Ctrl-C that waited for a storage call, unless a safe point has taken it already."""
    if _Interrupt.pending:
        os.kill(os.getpid(), signal.SIGINT)


def take_interrupt() -> None:
    """Raise the Ctrl-C that came at an unsafe moment, now that the moment is safe."""
    if _Interrupt.pending:
        _Interrupt.pending = False
        raise KeyboardInterrupt


@contextmanager
def interruptible() -> Iterator[None]:
    """A stretch of a worker loop where a Ctrl-C loses nothing, so it is taken at once (one that came before it,
    at once on entry): a trial's scoring, loading the data."""
    _Interrupt.live = True
    try:
        take_interrupt()
        yield
    finally:
        _Interrupt.live = False
