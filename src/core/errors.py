"""The errors a user can act on. Each message names the file or setting and what is wrong; the entry points
print them as one `error:` line instead of a stack trace (src/core/cli.py). Kept free of heavy imports so that
every entry point can catch them."""

from __future__ import annotations

import contextlib
import errno


class DataError(ValueError):
    """Input data that does not have the Kaggle layout, naming the file and what is wrong."""


class FilterbankError(ValueError):
    """A filterbank file (.h5/.fil) or cadence of them that cannot be searched: missing, unreadable, truncated,
    or not fitting the rest of its cadence. The message starts with the file's path."""


class ConfigError(ValueError):
    """A recipe or override that names an unknown key or holds a bad value."""


class CheckpointError(ValueError):
    """A checkpoint or saved training state that is missing, unreadable, not ours, or does not fit the model."""


class ModelError(ValueError):
    """A model the config cannot build: unknown backbone, bad option, missing or unfitting pretrained weights."""


class TrainingError(RuntimeError):
    """Training cannot go on; the message says where it stopped, why, and what to try."""


class StorageError(OSError):
    """A file could not be written for lack of space; the message says where and how to go on."""


def out_of_space(err: BaseException) -> bool:
    """Whether an error is a full device: OSError ENOSPC, or a library's wrapping of it (safetensors' Rust error
    is not an OSError and says so only in its text)."""
    return getattr(err, "errno", None) == errno.ENOSPC or "No space left on device" in str(err)


@contextlib.contextmanager
def incomplete_set_at(path, again: str = "make it again with --overwrite"):
    """A generator's output folder: a full device inside the block becomes a StorageError naming `path`, and
    Ctrl-C an Interrupted naming it, both saying that the set is incomplete and how to make it `again` (one
    line under run_cli, wherever it happened, a worker process included)."""
    try:
        yield
    except KeyboardInterrupt:
        raise Interrupted(f"{path}: the set is incomplete: {again}") from None
    except (OSError, RuntimeError) as err:  # h5py reports a failed write as a RuntimeError naming errno 28
        if isinstance(err, StorageError) or not out_of_space(err):
            raise
        raise StorageError(f"{path}: no space left on the device; the set is incomplete: free space, {again}") from None


class Interrupted(KeyboardInterrupt):
    """Ctrl-C (SIGINT) during long work; the message says what is intact and how to continue."""


def error_summary(err: BaseException) -> str:
    """The informative line of a library error: torch's first line says only "Error(s) in loading state_dict"."""
    lines = [line.strip() for line in str(err).strip().splitlines() if line.strip()]
    detail = next((line for line in lines if line.startswith(("size mismatch", "Missing key", "Unexpected key"))), None)
    return detail or (lines[0] if lines else type(err).__name__)


USER_ERRORS = (
    DataError,
    FilterbankError,
    ConfigError,
    CheckpointError,
    ModelError,
    TrainingError,
    StorageError,
    FileExistsError,
)
