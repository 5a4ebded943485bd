"""What the benchmark scripts share: finding the installed `astra` console script."""

from __future__ import annotations

import shutil
import sys
from pathlib import Path


def astra_executable(script: str) -> str:
    """The installed console script: beside this interpreter, else on PATH."""
    beside = Path(sys.executable).with_name("astra")
    found = str(beside) if beside.is_file() else shutil.which("astra")
    if not found:
        sys.exit(f"{script}: no `astra` console script (pip install -e . first)")
    return found
