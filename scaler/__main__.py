"""`python -m scaler` and the `scaler` command. A Ctrl-C is one line and exit status 130 even while the CLI itself is
still loading (scaler.cli.main takes it from there on)."""

import sys


def run() -> None:
    try:
        from scaler.cli import main
    except KeyboardInterrupt:
        print("scaler: interrupted", file=sys.stderr)
        sys.exit(130)
    main()


if __name__ == "__main__":
    run()
