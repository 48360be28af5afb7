"""`python -m scaler` and the `scaler` command. A Ctrl-C is one line and exit status 130 wherever it comes, even
while the command is still loading its libraries (scaler.cli.main turns every other one into that line)."""

import os
import signal


def _inside_an_import(frame) -> bool:
    while frame is not None:
        if frame.f_code.co_filename.startswith("<frozen importlib._bootstrap"):
            return True
        frame = frame.f_back
    return False


def _on_interrupt(signum, frame) -> None:
    """A Ctrl-C inside an import ends the process at once: raised there, it can be swallowed (torch's C start-up
    imports numpy and clears any error that import raises, KeyboardInterrupt included, and the command then went
    on to train), and nothing of the user's work is under way inside an import. Anywhere else it is Python's own
    KeyboardInterrupt, which the command handles."""
    if _inside_an_import(frame):
        os.write(2, b"scaler: interrupted\n")
        os._exit(130)
    raise KeyboardInterrupt


def run() -> None:
    signal.signal(signal.SIGINT, _on_interrupt)
    from scaler.cli import main
    main()


if __name__ == "__main__":
    run()
