"""Writing files a user relies on: whole or not at all.

Every result file is written next to its destination under a temporary name and renamed into place
(`os.replace` is atomic on POSIX), so a crash or a kill never leaves a half-written file that looks complete.
"""

from __future__ import annotations

import io
import os
from collections.abc import Callable, Mapping
from pathlib import Path

import numpy as np
import pandas as pd


def write_atomically(path: str | Path, write: Callable[[Path], None]) -> None:
    """Call `write(temporary_path)`, then rename the temporary file onto `path`; on failure remove it."""
    path = Path(path)
    temporary = path.with_name(f".{path.name}.tmp")
    try:
        write(temporary)
        os.replace(temporary, path)
    finally:
        temporary.unlink(missing_ok=True)


def write_text_atomically(path: str | Path, text: str) -> None:
    write_atomically(path, lambda temporary: temporary.write_text(text))


def write_csv_atomically(table: pd.DataFrame, path: str | Path) -> None:
    write_atomically(path, lambda temporary: table.to_csv(temporary, index=False))


def write_npy_atomically(array, path: str | Path) -> None:
    """An array as a .npy file, serialised first and written in one call: np.save writing to a file itself
    reports a full disk as a short write without an errno, a plain write as ENOSPC."""

    def write(temporary: Path) -> None:
        buffer = io.BytesIO()
        np.save(buffer, array)
        temporary.write_bytes(buffer.getbuffer())

    write_atomically(path, write)


def link_layout(folder: str | Path, links: Mapping[str, str | Path]) -> Path:
    """A folder whose entries are symbolic links to existing files and folders (a Kaggle layout put together
    from parts of others, nothing copied); entries already there are kept. Returns the folder."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    for name, target in links.items():
        if not (folder / name).exists():
            (folder / name).symlink_to(Path(target).resolve(), target_is_directory=Path(target).is_dir())
    return folder
