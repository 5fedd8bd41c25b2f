"""One way for every spinectx command to fail on bad input: ``<app>: error: <message>`` on stderr,
exit status 2, no traceback (the message names the file and the problem)."""

from __future__ import annotations

import functools
import sys
from collections.abc import Callable

from omegaconf.errors import MissingMandatoryValue

from spinectx.data.errors import ConfigError, DataError

#: what counts as bad input (not a bug): data, annotation and checkpoint errors, bad command-line
#: values, a mandatory value not given (``???`` in the config), a missing file, a path that is a
#: folder where a file is wanted (or the reverse), a file that may not be read or written
INPUT_ERRORS: tuple[type[BaseException], ...] = (DataError, ConfigError, MissingMandatoryValue, FileNotFoundError,
                                                  IsADirectoryError, NotADirectoryError, PermissionError)


def describe(exc: BaseException) -> str:
    """The error line's message: an operating-system error as ``<file>: <reason>`` (``out.json:
    Is a directory``), a mandatory value not given as ``root: missing; give root=... on the command
    line``, anything else as its own message."""
    if isinstance(exc, OSError) and exc.filename is not None and exc.strerror:
        return f"{exc.filename}: {exc.strerror}"
    if isinstance(exc, MissingMandatoryValue) and exc.full_key:
        return f"{exc.full_key}: missing; give {exc.full_key}=... on the command line"
    return str(exc)


def check_output_file(path: str, setting: str) -> str:
    """``path`` when a file can be written there, as the command's ``setting`` (e.g. ``out``).

    Raises:
        ConfigError: ``path`` is empty or an existing folder.
    """
    import os

    if not str(path).strip():
        raise ConfigError(f"{setting}= is empty; give the path of the file to write")
    if os.path.isdir(path):
        example = os.path.join(path, "out.json")
        raise ConfigError(f"{setting}={path} is a folder; give the path of a file to write (e.g. {setting}={example})")
    return str(path)


def input_error(exc: BaseException, errors: tuple[type[BaseException], ...] = INPUT_ERRORS) -> BaseException | None:
    """``exc`` when it is one of ``errors``; the error behind it when Hydra's ``instantiate``
    wrapped one (an ``InstantiationException`` raised *from* it, e.g. a bad ``data.fold`` refused
    by the DataModule's constructor) or OmegaConf's resolution of an interpolation did (a resolver
    refusing a value, e.g. an unknown ``data.view``); else None (a bug: its traceback is shown)."""
    from hydra.errors import InstantiationException
    from omegaconf.errors import InterpolationResolutionError

    while isinstance(exc, (InstantiationException, InterpolationResolutionError)):
        inner = exc.__cause__ or exc.__context__  # OmegaConf raises inside the resolver's ``except``
        if inner is None:
            break
        exc = inner
    return exc if isinstance(exc, errors) else None


def fail_cleanly(app: str, errors: tuple[type[BaseException], ...] = INPUT_ERRORS) -> Callable:
    """Decorate a Hydra task function (below ``@hydra.main``) so that ``errors`` (also when
    Hydra's ``instantiate`` wrapped them, see :func:`input_error`) end the command with
    ``<app>: error: <message>`` on stderr and exit status 2 instead of a traceback."""

    def wrap(task: Callable) -> Callable:
        @functools.wraps(task)
        def run(*args, **kwargs):
            try:
                return task(*args, **kwargs)
            except Exception as exc:
                cause = input_error(exc, errors)
                if cause is None:
                    raise
                print(f"{app}: error: {describe(cause)}", file=sys.stderr)
                raise SystemExit(2) from None

        return run

    return wrap
