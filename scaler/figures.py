"""What every figure shares: the file formats, the check of an output file before any work, saving, and how each
kind of candidate is drawn (the same marker and colour in every figure)."""

from __future__ import annotations

from pathlib import Path

from matplotlib.figure import Figure

from scaler.errors import ScalerError, check_output_file

FORMATS = (".png", ".svg", ".pdf")
FLOPS_AXIS = "FLOPs per image (multiply-adds, millions)"
# How each kind of trial is drawn: (label, marker, colour).
STYLE = {
    "compound": ("compound (grid)", "o", "tab:blue"),
    "baseline": ("baseline", "*", "black"),
    "depth": ("depth only", "s", "tab:orange"),
    "width": ("width only", "^", "tab:green"),
    "resolution": ("resolution only", "D", "tab:red"),
    "fast": ("fast rule (dWr)", "v", "tab:cyan"),
    "paper": ("paper's rule (1.2, 1.1, 1.15)", "X", "tab:olive"),
    "family": ("found family", "P", "tab:purple"),
}
def check_output(path: str | Path) -> Path:
    """An image file to write (.png, .svg or .pdf), checked before any work."""
    return check_output_file(path, FORMATS)


def save_figure(figure: Figure, path: Path) -> Path:
    try:
        figure.savefig(path, format=path.suffix[1:].lower(), bbox_inches="tight", dpi=150)
    except OSError as error:
        raise ScalerError(f"output: cannot write {path}: {error.strerror}") from None
    return path
