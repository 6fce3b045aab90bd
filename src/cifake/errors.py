"""The project's errors, and how a command reports them.

Every error a user can cause (bad params, a missing archive, a corrupt image, a
model file that is not one, an unreachable tracking server) is a
:class:`CifakeError`; commands turn it into one clear line and an exit status.
Exit status: 0 all done; 1 a fatal error; 2 a usage error; 3 finished, but some
input files were skipped (listed on stderr and in the errors file).
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Callable

EXIT_OK, EXIT_FATAL, EXIT_USAGE, EXIT_PARTIAL = 0, 1, 2, 3


class CifakeError(Exception):
    """An error with a message meant for the user: what was found, what was expected."""


def setup_logging() -> None:
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s", stream=sys.stderr)


def run_stage(main: Callable[[], int | None]) -> None:
    """Run a DVC stage's ``main``; a :class:`CifakeError` becomes one line on stderr and exit 1."""
    setup_logging()
    try:
        code = main()
    except CifakeError as exc:
        print(f"error: {exc}", file=sys.stderr)
        sys.exit(EXIT_FATAL)
    sys.exit(code or EXIT_OK)
