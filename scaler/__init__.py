"""scaler: find how to scale a convolutional network for a hardware budget.

The analytic names (specs, baselines, scaling, the estimator, budgets) import no torch; the names that train,
build or measure a network, and the searches, plots and reports, are loaded on first use (module `__getattr__`),
so that `import scaler` and the commands that need no tensor start at once.
"""

from __future__ import annotations

import importlib

from scaler.baselines import baseline_names, get_baseline, resolve_spec
from scaler.budget import Budget, Fit, budget_from_units, fit_phi
from scaler.errors import (NonFiniteLoss, OutOfMemory, ScalerError, SpecError, StorageFailed, TrainingError,
                           TrainingFailed, WorkerFailed)
from scaler.estimator import Estimate, estimate
from scaler.scaling import StageRule, compound, round_channels, round_repeats, round_resolution, scale, stage_rule
from scaler.spec import Head, Spec, Stage, Stem, load_spec, save_spec

# Loaded on first use: name -> the module that defines it.
_LAZY = {
    "build_model": "scaler.build",
    "Measurement": "scaler.measurement",
    "measure": "scaler.measurement",
    "TrainResult": "scaler.training",
    "train": "scaler.training",
    "Proxy": "scaler.study.proxy",
    "Recipe": "scaler.searches.compound_recipe",
    "load_recipe": "scaler.searches.compound_recipe",
    "SearchResult": "scaler.searches.compound_records",
    "search": "scaler.searches.compound",
    "read_search": "scaler.searches.compound_records",
    "BaselineRecipe": "scaler.searches.baseline",
    "BaselineResult": "scaler.searches.baseline_records",
    "baseline_search": "scaler.searches.baseline",
    "read_baseline_search": "scaler.searches.baseline_records",
    "Verdict": "scaler.study.verdict",
    "list_studies": "scaler.studies",
    "study_kind": "scaler.study.storage",
    "plot_study": "scaler.plot",
    "plot_family": "scaler.plot_family",
    "write_report": "scaler.report",
}

__all__ = [
    "Budget", "Estimate", "Fit", "Head", "NonFiniteLoss", "OutOfMemory", "ScalerError", "Spec", "SpecError", "Stage",
    "StageRule", "Stem", "StorageFailed", "TrainingError", "TrainingFailed", "WorkerFailed", "baseline_names",
    "budget_from_units", "compound", "estimate", "fit_phi", "get_baseline", "load_spec", "resolve_spec",
    "round_channels", "round_repeats", "round_resolution", "save_spec", "scale", "stage_rule", *_LAZY,
]


def __getattr__(name: str):
    if name not in _LAZY:
        raise AttributeError(f"module 'scaler' has no attribute {name!r}")
    value = getattr(importlib.import_module(_LAZY[name]), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(__all__)
