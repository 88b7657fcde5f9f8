"""What every command line of ours does with a user's mistake: one line, a non-zero exit."""

from __future__ import annotations

import os
import signal
import sys
import threading
from typing import Callable

EXIT_USAGE = 2  # the user's input was wrong: a name, a file, an argument
EXIT_INTERRUPTED = 130


class CliError(Exception):
    """A user's mistake found by the command itself."""


def version_text(prog: str) -> str:
    """What `--version` prints on every command line of ours, as `python -m serve --version`
    does: the program and the version of the installed cnn-zoo (or that it runs from a
    checkout that was never installed)."""
    from importlib import metadata

    try:
        version = metadata.version("cnn-zoo")
    except metadata.PackageNotFoundError:
        version = "(not installed: running from a source checkout)"
    return f"{prog} {version}"


def check_at_least(flag: str, value: int | float | None, least: int | float = 1, what: str = "") -> None:
    """A numeric argument at least `least` (when given), else a CliError in our words."""
    if value is not None and value < least:
        raise CliError(f"{flag} {value}: expected {what or f'at least {least}'}")


def user_errors() -> tuple[type[BaseException], ...]:
    """Exceptions that describe bad input and name what was wrong (never a bug of ours).
    Only modules already imported are asked for theirs: an error class of a module never
    imported cannot have been raised, and asking must not import torch."""
    errors: list[type[BaseException]] = [CliError, ValueError, FileNotFoundError]
    for module, name in (("zoo.download", "DownloadError"), ("zoo.idx", "IdxFormatError"),
                         ("zoo.weights", "WeightsError")):
        if module in sys.modules:
            errors.append(getattr(sys.modules[module], name))
    return tuple(errors)


def run_command(command: Callable[[], int | None]) -> int:
    """Run `command`; a user error prints one line and exits 2, Ctrl-C exits 130 (every
    file we write is written atomically, so nothing half-written stays behind)."""
    try:
        return command() or 0
    except user_errors() as e:
        print(f"error: {e}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        if threading.current_thread() is threading.main_thread():
            # Exiting now: a further Ctrl-C, or an interrupt still pending, must not turn the
            # exit status 130 into death by SIGINT (seen about once in 20 interrupted
            # trainings, after this handler had run; ignoring SIGINT here ended it).
            signal.signal(signal.SIGINT, signal.SIG_IGN)
        print("interrupted; nothing half-written was kept", file=sys.stderr)
        return EXIT_INTERRUPTED


def exit_process(code: int) -> None:
    """The end of a `python -m` command line. After an interrupt, leave without the
    interpreter's finalization: SIGINT ignored was not enough, about one interrupted
    training in 10-20 on a loaded machine still died by SIGINT (exit -2) after the handler
    had printed its line. Everything we write is atomic, and the temporary files were
    removed while the interrupt unwound, so nothing is left to finalize."""
    if code == EXIT_INTERRUPTED:
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)
    sys.exit(code)
