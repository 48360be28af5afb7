"""The proxy: how every candidate of a study is shrunk and trained to score it. Both searches hold one, and its
settings are part of every study's fingerprint.

A study stores its proxy's settings flat, beside the rest of its recipe, under the names the CLI options and the
recipe files use (`proxy_resolution`, `proxy_width`, `proxy_depth`, `epochs`, `batch_size`, ...).
"""

from __future__ import annotations

from dataclasses import dataclass, fields, replace

from scaler.errors import ScalerError, check_int, check_number, check_progressive
from scaler.scaling import scale
from scaler.spec import Spec

# A Proxy field -> its name in a recipe file, a CLI option and a study's stored settings.
FLAT_NAMES = {"data": "data", "epochs": "epochs", "resolution": "proxy_resolution", "width": "proxy_width",
              "depth": "proxy_depth", "batch_size": "batch_size", "train_size": "train_size",
              "val_size": "val_size", "seed": "seed", "progressive": "progressive"}
FIELD_NAMES = {flat: name for name, flat in FLAT_NAMES.items()}
# A proxy's channels round to multiples of 2, not of the baseline's 8: at half B0's width a multiple of 8 moved the
# stages' widths by up to 50 % (12 -> 16 channels) and let a width multiplier of 1.05 change nothing at all, so
# candidates could not be brought to equal FLOPs (scaler.equal_cost).
PROXY_DIVISOR = 2


@dataclass(frozen=True)
class Proxy:
    """The data, the shrink (width, depth, resolution of the network a candidate is scored as) and the training."""

    data: str = "synthetic"
    epochs: int = 4
    resolution: int = 48  # below the synthetic set's native 64 px, so resolution scaling can add detail
    width: float = 0.5
    depth: float = 0.5
    batch_size: int = 64
    train_size: int = 5000
    val_size: int = 2000  # 1,000 (noise about 0.01 top-1 at 0.9) took a fifth of the 0.02 goal's variance
    seed: int = 0
    progressive: int = 0  # K >= 2: progressive learning in K stages (scaler.training); 0: off

    def __post_init__(self) -> None:
        if not isinstance(self.data, str) or not self.data:
            raise ScalerError(f"data: expected a non-empty string, got {self.data!r}")
        for name in ("epochs", "resolution", "batch_size", "train_size", "val_size"):
            check_int(FLAT_NAMES[name].replace("_", " "), getattr(self, name))
        check_int("seed", self.seed, 0)
        for name in ("width", "depth"):
            check_number(FLAT_NAMES[name].replace("_", " "), getattr(self, name), 0, above_low=True)
        check_progressive(self.progressive)

    def shrink(self, spec: Spec) -> Spec:
        """Any network shrunk as this proxy shrinks: its width, depth and resolution, its channels to multiples of
        PROXY_DIVISOR."""
        return scale(replace(spec, divisor=PROXY_DIVISOR), width=self.width, depth=self.depth,
                     resolution=self.resolution)

    def settings(self) -> dict:
        """The proxy's settings under their flat names, as a study stores them."""
        return {FLAT_NAMES[f.name]: getattr(self, f.name) for f in fields(self)}


def split_settings(data: dict) -> tuple[dict, dict]:
    """Flat settings (a recipe file's, the CLI's) split into the proxy's (by field name) and the rest."""
    proxy = {FIELD_NAMES[k]: v for k, v in data.items() if k in FIELD_NAMES}
    return proxy, {k: v for k, v in data.items() if k not in FIELD_NAMES}


def with_settings(proxy: Proxy, flat: dict) -> Proxy:
    """`proxy` with the flat settings given (unknown names are the caller's to refuse)."""
    return replace(proxy, **split_settings(flat)[0])


# Sized so that `scaler search --quick` checks the whole machinery in under 3 minutes on a 2-core CPU (1:43 on an
# AMD EPYC, benchmarks/RESULTS.md): its scores are near chance and rank nothing. With every candidate at 2x the
# baseline's real FLOPs (scaler.equal_cost) and none sharing a network any more, 1024 images x 3 epochs took 5:18.
QUICK_PROXY = Proxy(epochs=2, resolution=32, width=0.5, depth=0.34, batch_size=32, train_size=512, val_size=256)
