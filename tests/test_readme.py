"""README.md is a walk-through that works: every shell block in it is either run here or marked
with the reason it is not.

Markers, on the line before a fenced block:

    <!-- test: run -->             run the block with bash -euo pipefail; it must exit 0
    <!-- test: skip: REASON -->    a shell block that is not run (it installs, or writes to $HOME)
    <!-- test: file PATH -->       write the block to PATH before anything is run
    <!-- ci: test command -->      the CI command (.ci/run runs it)
    <!-- test: crontab -->          crontab lines (tests/test_cron.py runs them as cron does)

The blocks run in order, in one temporary directory that holds what a new user has after the
first of README's two commands: the demo data set in `astra-demo/` (here the small one the other
tests share) and the README's example plugin, installed (here with pip --target, as
tests/conftest.py installs the test plugin).
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest
from conftest import ROOT, drawn

README = ROOT / "README.md"
SHELLS = {"bash", "sh", "shell", "console"}
FENCE = re.compile(r"^```(\w*)\n(.*?)^```\n", re.S | re.M)
MARKER = re.compile(
    r"<!-- (test: run|test: skip: .+|test: file \S+|ci: test command|test: crontab) -->"
)


@dataclass(frozen=True)
class Block:
    line: int
    language: str
    marker: str
    text: str


def blocks(text: str) -> list[Block]:
    """Every fenced block, with the marker on the line before it ('' when there is none)."""
    found = []
    for fence in FENCE.finditer(text):
        before = text[: fence.start()].rstrip("\n").rsplit("\n", 1)[-1]
        marker = MARKER.fullmatch(before.strip())
        found.append(
            Block(
                line=text.count("\n", 0, fence.start()) + 1,
                language=fence.group(1),
                marker=marker.group(1) if marker else "",
                text=fence.group(2),
            )
        )
    return found


BLOCKS = blocks(README.read_text())
RUN = [block for block in BLOCKS if block.marker == "test: run"]
FILES = {block.marker.removeprefix("test: file "): block for block in BLOCKS
         if block.marker.startswith("test: file ")}  # fmt: skip


def test_every_shell_block_is_run_or_says_why_not():
    unmarked = [block.line for block in BLOCKS if block.language in SHELLS and not block.marker]
    assert not unmarked, f"README.md lines {unmarked}: shell blocks without a test marker"
    assert len(RUN) >= 8
    assert {"linedepth/astra_linedepth.py", "linedepth/pyproject.toml"} <= FILES.keys()


def test_the_ci_command_is_marked_for_ci():
    (ci,) = [block for block in BLOCKS if block.marker == "ci: test command"]
    assert "python -m pytest" in ci.text


@pytest.fixture(scope="module")
def walk_through(demo_files, tmp_path_factory) -> tuple[Path, dict[str, str]]:
    """A directory and environment like a new user's after `astra demo`, with the README's
    plugin installed."""
    home = tmp_path_factory.mktemp("readme")
    (home / "astra-demo").symlink_to(demo_files.directory.resolve(), target_is_directory=True)
    for name, block in FILES.items():
        (home / name).parent.mkdir(parents=True, exist_ok=True)
        (home / name).write_text(block.text)
    site = home / "site"
    subprocess.run(
        [sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--target", str(site),
         str(home / "linedepth")],
        check=True,
    )  # fmt: skip
    env = {
        name: value
        for name, value in os.environ.items()
        if name not in ("ASTRA_OUTPUT_DIR", "SAS_BASE_DIR") and not name.startswith("_ASTRA")
    }
    env["PATH"] = os.pathsep.join([str(Path(sys.executable).parent), env.get("PATH", "")])
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(site), env.get("PYTHONPATH")]))
    env["NO_COLOR"] = "1"
    return home, env


def test_readme_commands_run(walk_through):
    """All blocks in one test, in order: later blocks use what earlier ones wrote."""
    home, env = walk_through
    for block in RUN:
        result = subprocess.run(
            ["bash", "-euo", "pipefail", "-c", block.text],
            cwd=home,
            env=env,
            capture_output=True,
            text=True,
            timeout=300,
        )
        assert result.returncode == 0, (
            f"README.md line {block.line} exited {result.returncode}:\n{block.text}\n"
            f"--- stdout\n{result.stdout[-3000:]}\n--- stderr\n{result.stderr[-3000:]}"
        )
    assert (home / "grid.fits").is_file() and (home / "rv.csv").is_file()
    assert (home / "my-cannon.fits").is_file()
    drawn(home / "fit.png")  # the walk-through ends in pictures: real ones, not blank
    drawn(home / "kiel.png")
    depths = (home / "linedepth.csv").read_text().splitlines()
    assert depths[0].split(",").count("depth") == 1
    assert len(depths) == 1 + 2 * len(walk_through_stars(home))


def walk_through_stars(home: Path) -> list[str]:
    return (home / "astra-demo" / "stars.csv").read_text().splitlines()[1:]
