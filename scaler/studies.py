"""Every study in a storage at a glance, and any one study read back by its kind: compound searches and baseline
searches alike. Reading writes nothing."""

from __future__ import annotations

from dataclasses import dataclass

import optuna

from scaler.errors import ScalerError
from scaler.searches.baseline import (BaselineResult, BaselineTrial, baseline_records, best_candidate,
                                      read_baseline_search)
from scaler.searches.compound import SearchResult, TrialRecord, read_search, records, stored_recipe, study_total
from scaler.study.storage import find_study, load_study, local_storages, open_storage, storage_failures, study_kind


@dataclass(frozen=True)
class StudySummary:
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


def summarise(study: optuna.Study, url: str) -> StudySummary:
    """One study's progress and best candidate."""
    if study_kind(study) == "baseline":
        trials = baseline_records(study)
        states = [t.state for t in trials]
        return StudySummary(study.study_name, url, "baseline", "tpe", study.user_attrs.get("trials", len(trials)),
                            states.count("COMPLETE"), states.count("FAIL"), 0, states.count("RUNNING"),
                            best_candidate(trials))
    trials = records(study)
    states = [t.state for t in trials]
    best = max((t for t in trials if t.kind == "compound" and t.top1 is not None), key=lambda t: t.top1,
               default=None)
    try:
        sampler, total = stored_recipe(study).sampler, study_total(study)
    except ScalerError:
        sampler, total = "?", len(trials)  # a study scaler did not make, or an older version's
    return StudySummary(study.study_name, url, "compound", sampler, total, states.count("COMPLETE"),
                        states.count("FAIL"), states.count("PRUNED"), states.count("RUNNING"), best)


def list_studies(storage: str | None = None) -> list[StudySummary]:
    """Every study in `storage`, or in every storage under studies/ when none is given: progress and best."""
    summaries = []
    with storage_failures():
        for url in [storage] if storage else local_storages():
            opened = open_storage(url)
            for name in sorted(optuna.get_all_study_names(opened)):
                summaries.append(summarise(optuna.load_study(study_name=name, storage=opened), url))
    return summaries


def read_study(study_name: str, storage: str | None = None) -> SearchResult | BaselineResult:
    """A study read back as its kind's result, found in `storage` or under studies/."""
    url = find_study(study_name, storage)
    with storage_failures():
        kind = study_kind(load_study(study_name, url))
    return read_baseline_search(study_name, url) if kind == "baseline" else read_search(study_name, url)

