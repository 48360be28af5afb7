"""Every study in a storage at a glance, and any one study read back by its kind: compound searches and baseline
searches alike. Reading writes nothing."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import optuna

from scaler.errors import ScalerError
from scaler.searches.baseline_records import (BaselineResult, BaselineTrial, baseline_records, best_candidate,
                                              read_baseline_search)
from scaler.searches.compound_records import (SearchResult, TrialRecord, read_search, records, stored_recipe,
                                              study_total, trial_candidate)
from scaler.study.storage import find_study, load_study, local_storages, open_storage, storage_failures, study_kind
from scaler.study.trials import candidate_states
from scaler.study.verdict import Standing, judge


@dataclass(frozen=True)
class StudySummary:
    """A study's progress, counted in candidates (a trial cut off and trained again counts as done), and its
    winner: a compound study's by mean top-1 over its seeds (`winner` has that mean, n and standard error), a
    baseline study's by reward."""

    name: str
    storage: str
    kind: str  # "compound" (scaler search) or "baseline" (scaler baseline-search)
    sampler: str
    total: int
    complete: int
    failed: int
    pruned: int
    running: int
    best: TrialRecord | BaselineTrial | None
    winner: Standing | None = None


def _counts(states: list[str]) -> tuple[int, int, int, int]:
    return tuple(states.count(state) for state in ("COMPLETE", "FAIL", "PRUNED", "RUNNING"))


def summarise(study: optuna.Study, url: str) -> StudySummary:
    """One study's progress and best candidate."""
    if study_kind(study) == "baseline":
        trials = baseline_records(study)
        states = list(candidate_states(trials, lambda t: t.choices).values())
        return StudySummary(study.study_name, url, "baseline", "tpe", study.user_attrs.get("trials", len(trials)),
                            *_counts(states), best_candidate(trials))
    trials = records(study)
    states = list(candidate_states(trials, trial_candidate).values())
    best, verdict = judge(trials)
    try:
        sampler, total = stored_recipe(study).sampler, study_total(study)
    except ScalerError:
        sampler, total = "?", len(states)  # a study scaler did not make, or an older version's
    return StudySummary(study.study_name, url, "compound", sampler, total, *_counts(states), best,
                        None if verdict is None else verdict.winner)


def list_studies(storage: str | None = None,
                 on_unreadable: Callable[[str, str], None] | None = None) -> list[StudySummary]:
    """Every study in `storage`, or in every storage under studies/ when none is given: progress and best. Under
    studies/, a file that cannot be read (not a database, a study of another tool) is passed over, and
    `on_unreadable(storage, why)` told of it; a storage given by name must be readable."""
    summaries = []
    for url in [storage] if storage else local_storages():
        try:
            with storage_failures():
                opened = open_storage(url)
                found = [summarise(optuna.load_study(study_name=name, storage=opened), url)
                         for name in sorted(optuna.get_all_study_names(opened))]
        except ScalerError as error:
            if storage or on_unreadable is None:
                raise
            on_unreadable(url, str(error).strip().splitlines()[0])
            continue
        summaries += found
    return summaries


def read_study(study_name: str, storage: str | None = None) -> SearchResult | BaselineResult:
    """A study read back as its kind's result, found in `storage` or under studies/."""
    url = find_study(study_name, storage)
    with storage_failures():
        kind = study_kind(load_study(study_name, url))
    return read_baseline_search(study_name, url) if kind == "baseline" else read_search(study_name, url)

