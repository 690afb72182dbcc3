"""What the entry points share: user mistakes end with one clear line, not a stack trace.

Errors of the user's input (data, config, checkpoints, files that would be overwritten) carry a message that
names the file and the problem; anything else is a bug and keeps its traceback.
"""
from __future__ import annotations

import sys
from typing import Callable

from .errors import USER_ERRORS

USER_ERROR_EXIT_CODE = 2


def user_message(err: Exception) -> str:
    """The error's own message; DataLoader workers re-raise with the worker's traceback inside it, whose last
    line (`module.ErrorType: message`) is the error itself."""
    text = str(err).strip()
    if "Original Traceback" not in text:
        return text
    last_line = text.splitlines()[-1]
    return last_line.split(": ", 1)[1] if ": " in last_line else last_line


def run_cli(main: Callable[[], object]) -> None:
    """Run an entry point; a user error prints `error: <message>` to stderr and exits with code 2."""
    try:
        main()
    except USER_ERRORS as err:
        print(f"error: {user_message(err)}", file=sys.stderr)
        sys.exit(USER_ERROR_EXIT_CODE)
