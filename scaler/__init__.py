"""scaler: find how to scale a convolutional network for a hardware budget."""

from scaler.baselines import baseline_names, get_baseline, resolve_spec
from scaler.budget import Budget, Fit, fit_phi
from scaler.build import build_model
from scaler.errors import ScalerError, SpecError
from scaler.estimate import Estimate, estimate
from scaler.measure import Measurement, measure
from scaler.scaling import StageRule, compound, round_channels, round_repeats, round_resolution, scale, stage_rule
from scaler.spec import Head, Spec, Stage, Stem, load_spec, save_spec
from scaler.train import NonFiniteLoss, OutOfMemory, TrainingError, TrainingFailed, TrainResult, train

__all__ = [
    "Budget", "Estimate", "Fit", "Head", "Measurement", "NonFiniteLoss", "OutOfMemory", "ScalerError", "Spec",
    "SpecError", "Stage", "StageRule", "Stem", "TrainResult", "TrainingError", "TrainingFailed", "train",
    "baseline_names", "build_model", "compound", "estimate", "fit_phi", "get_baseline", "load_spec", "measure",
    "resolve_spec", "round_channels", "round_repeats", "round_resolution", "save_spec", "scale", "stage_rule",
]
