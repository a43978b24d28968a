"""Argument types shared by the sub-commands: counts and sizes checked by argparse itself.

A value outside its range is an argparse error, which ``busray.cli.main`` prints as one line naming the
flag (``busray: error: sweep: argument --add-trials: -1 is outside [1, 100000]``), before
any config is read or Ray is started.
"""

from __future__ import annotations

import argparse
from typing import Callable

#: ``data synth --size`` limits, the same as ``busray.data.synth`` (a test keeps them equal); repeated
#: here because importing the generator loads numpy/PIL/scipy for every command, ``--help`` included.
SYNTH_MIN_SIZE, SYNTH_MAX_SIZE = 32, 4096


def bounded_int(lo: int, hi: int) -> Callable[[str], int]:
    """An argparse type: an integer in [lo, hi] (argparse names the flag in its error)."""
    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"'{text}' is not an integer") from None
        if not lo <= value <= hi:
            raise argparse.ArgumentTypeError(f"{value} is outside [{lo}, {hi}]")
        return value
    return parse
