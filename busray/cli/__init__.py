"""The ``busray`` command line (see ``busray --help`` and the README)."""

from busray.cli.main import main

__all__ = ["main"]
