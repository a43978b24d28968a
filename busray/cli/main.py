"""``busray``: argument parsing and the one error boundary; each sub-command lives in its own module.

The promise (docs/ERRORS.md): every failure -- a bad flag, config key, image, checkpoint, storage path,
a full disk, a missing GPU, a bug -- prints exactly one line ``busray: error: <what, naming the file or
key>`` to stderr and exits 2; ``busray --debug`` (or ``BUSRAY_DEBUG=1``) adds the traceback. Ctrl-C
exits 130; a closed pipe (``busray config --keys | head -1``) exits 141 quietly. Argparse's own usage
errors follow the same one-line rule.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
import traceback

from busray import __version__
from busray.cli import commands_ray, commands_train
from busray.cli.errors import (EXIT_BROKEN_PIPE, EXIT_ERROR, EXIT_INTERRUPTED, EXIT_TERMINATED, Terminated,
                               UsageError, one_line)

DESCRIPTION = """\
Train, sweep and ablate a multi-task breast-ultrasound model (segmentation + classification with
uncertainty-aware fusion), single-process or distributed on Ray; every run is recorded in a
Parquet results store.

Bad input never half-writes anything: it prints one line `busray: error: ...` naming the file or
config key and exits with status 2."""

EPILOG = """\
examples:
  busray data synth data/synth --n 120            # a BUSI-like synthetic dataset
  busray train --data data/synth --out runs/first --set train.epochs=5
  busray evaluate runs/first --split test
  busray sweep sweeps/smoke.yaml --storage demo   # a sweep on local Ray
  busray results list --storage demo
  busray config --keys                            # every config key with default and meaning

Run `busray COMMAND --help` for the options of one command."""


class HelpFormatter(argparse.HelpFormatter):
    """Wraps descriptions paragraph by paragraph, keeps indented example epilogs as written, and
    appends each option's default to its help."""

    def _fill_text(self, text: str, width: int, indent: str) -> str:
        if "\n  " in text:  # an epilog of indented examples
            return "".join(indent + line for line in text.splitlines(keepends=True))
        return "\n\n".join(super(HelpFormatter, self)._fill_text(part, width, indent)
                            for part in text.split("\n\n"))

    def _get_help_string(self, action: argparse.Action) -> str:
        text = action.help or ""
        default = action.default
        if ("%(default)" in text or "default" in text or not action.option_strings
                or default is None or isinstance(default, bool) or default == argparse.SUPPRESS
                or default == []):
            return text
        return f"{text} (default: %(default)s)"


class Parser(argparse.ArgumentParser):
    """ArgumentParser whose errors are one line (raised, so ``main`` prints them like any other)."""

    def __init__(self, *args, **kwargs) -> None:
        kwargs.setdefault("formatter_class", HelpFormatter)
        super().__init__(*args, **kwargs)

    def error(self, message: str):
        command = self.prog.removeprefix("busray").strip()
        where = f"{command}: " if command else ""
        raise UsageError(f"{where}{message} (see {self.prog} --help)")


def build_parser() -> Parser:
    parser = Parser(prog="busray", description=DESCRIPTION, epilog=EPILOG)
    parser.add_argument("--version", action="version", version=f"busray {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="log at INFO level")
    parser.add_argument("--debug", action="store_true",
                        help="on an error, print the traceback as well (also: BUSRAY_DEBUG=1)")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    commands_train.register(sub)
    commands_ray.register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    debug = os.environ.get("BUSRAY_DEBUG", "") not in ("", "0")
    try:
        args = build_parser().parse_args(argv)
        debug = debug or getattr(args, "debug", False)
        logging.basicConfig(level=logging.INFO if getattr(args, "verbose", False) else logging.WARNING,
                            format="%(levelname)s %(name)s: %(message)s")
        code = int(args.handler(args) or 0)
        sys.stdout.flush()  # a closed pipe shows up here, inside the boundary, not at exit
        return code
    except SystemExit as stop:  # --help and --version exit 0 through argparse
        return int(stop.code or 0) if isinstance(stop.code, int) or stop.code is None else EXIT_ERROR
    except BrokenPipeError:
        _silence_stdout()
        return EXIT_BROKEN_PIPE
    except Terminated:
        print("busray: terminated (SIGTERM)", file=sys.stderr)
        return EXIT_TERMINATED
    except KeyboardInterrupt:
        print("busray: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    except BaseException as err:  # noqa: BLE001 -- the one boundary: every failure is one line
        if debug:
            traceback.print_exc()
        print(f"busray: error: {one_line(err)}", file=sys.stderr)
        return EXIT_ERROR


def _silence_stdout() -> None:
    """Point stdout at /dev/null so the interpreter's final flush does not raise again."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
    except (OSError, ValueError):  # stdout without a file descriptor (a test's capture)
        pass


if __name__ == "__main__":
    sys.exit(main())
