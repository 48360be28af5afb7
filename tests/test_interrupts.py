"""A Ctrl-C inside a worker's scoring is taken at once, except inside a storage call: that finishes first."""

import os
import signal
import time

import optuna
import pytest
from optuna.storages.journal import BaseJournalBackend, JournalStorage

from scaler.study.interrupts import interruptible, safe_interrupts


class SlowJournal(BaseJournalBackend):
    """A journal whose write takes a while and is hit by a Ctrl-C halfway, as a journal file's lock release was."""

    def __init__(self):
        self.logs, self.interrupt = [], False

    def read_logs(self, log_number_from):
        return self.logs[log_number_from:]

    def append_logs(self, logs):
        if self.interrupt:
            os.kill(os.getpid(), signal.SIGINT)
            time.sleep(0.3)  # the signal is handled here, inside the write
        self.logs.extend(logs)


def test_a_ctrl_c_inside_a_storage_write_is_taken_once_the_write_is_done():
    journal = SlowJournal()
    study = optuna.create_study(storage=JournalStorage(journal))
    trial = study.ask()
    journal.interrupt = True
    written_before_interrupt = []
    with pytest.raises(KeyboardInterrupt):
        with safe_interrupts(), interruptible():
            trial.set_user_attr("stage", "scored")
            written_before_interrupt.append(len(journal.logs))
            time.sleep(5)  # training on: the Ctrl-C must come here, soon
            pytest.fail("the Ctrl-C was lost")
    journal.interrupt = False
    assert written_before_interrupt  # the write ended whole before the Ctrl-C was taken
    assert study.trials[0].user_attrs == {"stage": "scored"}


def test_a_ctrl_c_in_a_scoring_outside_storage_is_taken_at_once():
    started = time.monotonic()
    with pytest.raises(KeyboardInterrupt):
        with safe_interrupts(), interruptible():
            os.kill(os.getpid(), signal.SIGINT)
            time.sleep(5)
    assert time.monotonic() - started < 2


def test_a_ctrl_c_outside_a_scoring_waits_for_the_next_safe_point():
    taken_at = []
    with pytest.raises(KeyboardInterrupt):
        with safe_interrupts():
            os.kill(os.getpid(), signal.SIGINT)
            time.sleep(0.2)
            taken_at.append("bookkeeping done")
            with interruptible():
                taken_at.append("scoring began")
    assert taken_at == ["bookkeeping done"]
