"""What the entry points share: user mistakes end with one clear line, not a stack trace.

Errors of the user's input (data, config, checkpoints, files that would be overwritten) carry a message that
names the file and the problem; anything else is a bug and keeps its traceback.
"""
from __future__ import annotations

import sys
from typing import Callable

from .checkpoint import CheckpointError
from .config import ConfigError
from .data import DataError

USER_ERRORS = (DataError, ConfigError, CheckpointError, FileExistsError)
USER_ERROR_EXIT_CODE = 2


def run_cli(main: Callable[[], object]) -> None:
    """Run an entry point; a user error prints `error: <message>` to stderr and exits with code 2."""
    try:
        main()
    except USER_ERRORS as err:
        print(f"error: {err}", file=sys.stderr)
        sys.exit(USER_ERROR_EXIT_CODE)
