"""``busray``: argument parsing and error handling; each sub-command lives in its own module.

Every expected failure (bad config key, unreadable image, unknown sweep, ...) is printed as one line
``busray: error: <what, naming the file or key>`` with exit status 2; nothing is half-written because
every writer in busray writes to a temp file and renames it.
"""

from __future__ import annotations

import argparse
import logging
import sys

from busray import __version__
from busray.cli import commands_ray, commands_train

EXPECTED_ERRORS = (ValueError, FileNotFoundError, NotADirectoryError, PermissionError, KeyError)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="busray", description=__doc__.splitlines()[0].split(": ", 1)[1])
    parser.add_argument("--version", action="version", version=f"busray {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="log at INFO level")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    commands_train.register(sub)
    commands_ray.register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING,
                        format="%(levelname)s %(name)s: %(message)s")
    try:
        return int(args.handler(args) or 0)
    except EXPECTED_ERRORS as err:
        message = str(err).splitlines()[0] if str(err) else type(err).__name__
        print(f"busray: error: {message}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("busray: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
