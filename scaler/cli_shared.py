"""What every `scaler` command shares: the one way a result is printed (`emit`), progress on stderr (`say`,
`live`, the training's live line), and the options several commands take alike."""

from __future__ import annotations

import json
import sys
from collections.abc import Callable

import click

from scaler.errors import ScalerError
from scaler.estimator import PRECISIONS
from scaler.progress import PROGRESS_EVERY, epoch_line
from scaler.study.proxy import QUICK_PROXY, Proxy

# `--progressive` alone is EfficientNetV2's 4 stages; `--progressive K` chooses; absent, the recipe's (off).
PROGRESSIVE_OPTION = click.option(
    "--progressive", type=int, is_flag=False, flag_value=4, default=None,
    help="Progressive learning: image size, dropout and augmentation ramped over K stages (K = 4 when given alone).")


def emit(as_json: bool, data, text: Callable[[], str]) -> None:
    """The one way a result is printed: its JSON, or its text for people."""
    click.echo(json.dumps(data, indent=2) if as_json else text())


def say(line: str) -> None:
    """The one way progress is printed: a line on stderr (on a terminal, over a live line left there)."""
    click.echo(f"\r\033[K{line}" if sys.stderr.isatty() else line, err=True)


def live(line: str, last: bool, first: bool) -> None:
    """A line that a long step rewrites in place on a terminal; in a log, only when it is `first` or `last`."""
    if sys.stderr.isatty():
        click.echo(f"\r{line}\033[K", err=True, nl=last)
    elif first or last:
        click.echo(line, err=True)


THREADS_OPTION = click.option("--threads", type=int, help="CPU threads to train with (default: every core this "
                              "process may use; with several workers, split among them).")


def budget_limits(gflops, params, memory_gb, latency_ms, precision) -> dict:
    return {"gflops": gflops, "params": params, "memory_gb": memory_gb, "latency_ms": latency_ms,
            "precision": precision}


def _first_report(progress) -> bool:
    return progress.epoch == 1 and progress.step <= PROGRESS_EVERY


def show_training(progress) -> None:
    """`scaler train`'s status: rewritten in place on a terminal, a line per epoch in a log."""
    live(epoch_line(progress), progress.epoch == progress.epochs and progress.step == progress.steps,
         _first_report(progress) or progress.step == progress.steps)


def show_trial_training(progress) -> None:
    """The same status inside a search's trial: in place on a terminal (the trial's own line replaces it when it
    ends), its first report alone in a log, so that a log has one such line per trial."""
    live(epoch_line(progress), False, _first_report(progress))


def option_group(*options):
    """One decorator that adds `options` as if each were written above the command, in the order given."""
    def decorate(command):
        for option in reversed(options):
            command = option(command)
        return command
    return decorate


DEFAULT_PROXY = Proxy()


def _defaults(name: str) -> str:
    return f"default {getattr(DEFAULT_PROXY, name):g}; {getattr(QUICK_PROXY, name):g} with --quick"


# The four budgets and their precision, for every command that fits phi to a budget.
budget_options = option_group(
    click.option("--budget-gflops", type=float, help="Fit phi to this many GFLOPs (multiply-adds) per image."),
    click.option("--budget-params", type=float, help="Fit phi to at most this many parameters."),
    click.option("--budget-memory-gb", type=float,
                 help="Fit phi to this peak training memory (GB, 10^9 bytes) at --batch-size."),
    click.option("--budget-latency-ms", type=float, help="Fit phi to this forward latency, measured on --device."),
    click.option("--precision", type=click.Choice(PRECISIONS),
                 help="Precision the full network trains and runs in, for the memory and latency budgets "
                 "(default: what scaler train uses on --device: bf16-mixed on CUDA, float32 on CPU)."),
)

# The proxy-training options of both searches (each candidate is shrunk and trained alike); the defaults said
# are the recipes' own.
proxy_options = option_group(
    click.option("--data", help=f"Proxy data (default {DEFAULT_PROXY.data})."),
    click.option("--epochs", type=int, help=f"Epochs of proxy training per candidate ({_defaults('epochs')})."),
    click.option("--proxy-resolution", type=int,
                 help=f"Proxy training resolution in pixels ({_defaults('resolution')})."),
    click.option("--proxy-width", type=float,
                 help=f"Shrink each candidate's width for scoring ({_defaults('width')})."),
    click.option("--proxy-depth", type=float,
                 help=f"Shrink each candidate's depth for scoring ({_defaults('depth')})."),
    click.option("--batch-size", "-b", type=int, help=f"Proxy batch size ({_defaults('batch_size')}); a search's "
                 "memory and latency budgets use it too."),
    click.option("--train-size", type=int, help=f"Proxy training images ({_defaults('train_size')})."),
    click.option("--val-size", type=int, help=f"Proxy validation images ({_defaults('val_size')})."),
    click.option("--seed", type=int, help=f"Proxy seed (default {DEFAULT_PROXY.seed})."),
    PROGRESSIVE_OPTION,
)


def study_options(default_names: str, output_help: str):
    """The options both searches take to name, store and place their study and its result."""
    return option_group(
        click.option("--study-name", default=None, help=f"Study name (default {default_names})."),
        click.option("--storage", help="Optuna storage URL (default sqlite:///studies/<study-name>.db)."),
        click.option("--output", "-o", help=output_help),
        click.option("--device", default="auto", show_default=True, help="auto, cpu, cuda or cuda:K."),
        click.option("--json", "as_json", is_flag=True, help="Print the result as JSON."),
    )


def numbers(option: str, text: str) -> tuple[float, ...]:
    """'0,1,2' -> (0.0, 1.0, 2.0); anything else is one error naming the option."""
    try:
        return tuple(float(part) for part in text.split(","))
    except ValueError:
        raise ScalerError(f"{option}: expected numbers separated by commas, got {text!r}") from None
