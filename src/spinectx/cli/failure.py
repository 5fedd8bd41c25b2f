"""One way for every spinectx command to fail on bad input: ``<app>: error: <message>`` on stderr,
exit status 2, no traceback (the message names the file and the problem)."""

from __future__ import annotations

import functools
import sys
from collections.abc import Callable

from spinectx.data.errors import DataError

#: what counts as bad input (not a bug): data and annotation errors, a missing checkpoint or file
INPUT_ERRORS: tuple[type[BaseException], ...] = (DataError, FileNotFoundError)


def fail_cleanly(app: str, errors: tuple[type[BaseException], ...] = INPUT_ERRORS) -> Callable:
    """Decorate a Hydra task function (below ``@hydra.main``) so that ``errors`` end the command
    with ``<app>: error: <message>`` on stderr and exit status 2 instead of a traceback."""

    def wrap(task: Callable) -> Callable:
        @functools.wraps(task)
        def run(*args, **kwargs):
            try:
                return task(*args, **kwargs)
            except errors as exc:
                print(f"{app}: error: {exc}", file=sys.stderr)
                raise SystemExit(2) from None

        return run

    return wrap
