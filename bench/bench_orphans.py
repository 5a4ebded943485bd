"""kill -9 of an invocation in the middle of its work, again and again: how many of its
processes (its loky workers, their resource tracker) are still alive afterwards.

    python bench/bench_orphans.py [--trials 20] [--jobs 2]

Each trial runs `astra analyse grid` on the demo stars with small chunks, waits until the
first results are committed (so every worker holds the grid), kills the invoking process with
SIGKILL and then watches for 10 s every process that inherited the trial's marker in its
environment. Prints, per trial and in total, the processes left after 10 s and how long the
last one took to go; asserts nothing.
"""

from __future__ import annotations

import argparse
import os
import signal
import sqlite3
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

from astra_cli.demo.dataset import DemoConfig, write_demo

WATCH_SECONDS = 10.0


def marked(marker: str) -> list[int]:
    """Processes whose environment holds the marker."""
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if marker.encode() in (entry / "environ").read_bytes():
                    found.append(int(entry.name))
            except OSError:
                continue
    return found


def committed(output: Path) -> int:
    try:
        with sqlite3.connect(f"file:{output / 'astra.sqlite'}?mode=ro", uri=True) as connection:
            return connection.execute("SELECT COUNT(*) FROM runs").fetchone()[0]
    except sqlite3.Error:
        return 0


def trial(demo, jobs: int, scratch: Path) -> tuple[int, float]:
    """(processes alive WATCH_SECONDS after the kill, seconds until the last one went)."""
    marker = f"ASTRA_ORPHAN_TRIAL_{uuid.uuid4().hex}"
    output = scratch / marker
    stars = sorted(str(path) for path in demo.data_root.rglob("apStar-*.fits"))
    process = subprocess.Popen(
        [sys.executable, "-m", "astra_cli", "analyse", "grid", *stars,
         "--grid", str(demo.grid_fits), "--jobs", str(jobs), "--chunk-size", "2",
         "-o", str(output), "--quiet"],
        env={**os.environ, marker: "1", "OMP_NUM_THREADS": "1"},
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    deadline = time.monotonic() + 120
    while committed(output) == 0 and time.monotonic() < deadline:
        time.sleep(0.05)
    process.send_signal(signal.SIGKILL)
    process.wait()
    killed = time.monotonic()
    while marked(marker) and time.monotonic() - killed < WATCH_SECONDS:
        time.sleep(0.05)
    left = marked(marker)
    for pid in left:  # leave the machine as it was
        os.kill(pid, signal.SIGKILL)
    return len(left), time.monotonic() - killed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=20)
    parser.add_argument("--jobs", type=int, default=2)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as scratch:
        demo = write_demo(Path(scratch) / "demo", DemoConfig(n_stars=60, n_train=50))
        results = []
        for number in range(1, args.trials + 1):
            left, seconds = trial(demo, args.jobs, Path(scratch))
            results.append((left, seconds))
            print(f"trial {number:2d}: {left} process(es) left after {WATCH_SECONDS:.0f} s; "
                  f"the last went {seconds:.2f} s after the kill", flush=True)  # fmt: skip
    alive = sum(left for left, _ in results)
    slowest = max(seconds for _, seconds in results)
    print(f"{args.trials} trials, --jobs {args.jobs}: {alive} process(es) left in all; "
          f"slowest to go {slowest:.2f} s")  # fmt: skip


if __name__ == "__main__":
    main()
