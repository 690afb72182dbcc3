"""The entry points' shared runtime (src/core/cli.py): large CPU buffers are reused, not mapped afresh each batch."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from src.core.cli import reuse_large_allocations

REPO = Path(__file__).resolve().parents[1]
# Resident memory (MiB) kept after a 256 MiB buffer is filled and freed: glibc unmaps it by default, and keeps
# it for the next batch once large allocations are reused.
KEPT = """
import os, sys
import numpy as np
if sys.argv[1] == "reuse":
    from src.core.cli import reuse_large_allocations
    assert reuse_large_allocations()
def resident():
    return int(open("/proc/self/statm").read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20
before = resident()
buffer = np.ones(1 << 26, np.float32)
del buffer
print(resident() - before)
"""


def kept_mib(mode: str) -> float:
    result = subprocess.run([sys.executable, "-c", KEPT, mode], cwd=REPO, capture_output=True, text=True, check=True)
    return float(result.stdout.strip())


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's mallopt")
def test_large_buffers_are_kept_for_reuse_instead_of_unmapped():
    assert reuse_large_allocations()
    assert kept_mib("default") < 16  # unmapped on free: the next batch maps and faults it in again
    assert kept_mib("reuse") > 240  # kept: the next batch of that size reuses it
