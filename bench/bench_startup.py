"""Start-up time of the installed `astra` console script: `astra --help` and shell completion.

Each command runs --runs times (default 20) as a real subprocess of the console script (the one
beside this interpreter, else `astra` on PATH), after one untimed run that warms the file cache;
wall time from spawning to exit. The completion requests are what bash sends on <TAB>:

    _ASTRA_COMPLETE=complete_bash COMP_WORDS="astra analyse " COMP_CWORD=2 astra
    _ASTRA_COMPLETE=complete_bash COMP_WORDS="astra analyse grid --" COMP_CWORD=3 astra

and their output is checked (method names; option names) so a broken completion is not timed as
a fast one. For scale, `python -c pass` with the same interpreter is timed too.

Everything is measured twice: in the environment as it is, and with a bytecode cache in a
temporary PYTHONPYCACHEPREFIX (and PYTHONDONTWRITEBYTECODE unset), as an installed package
normally runs: where PYTHONDONTWRITEBYTECODE is set, an editable install compiles astra_cli's
sources at every start.

    /work/venv/bin/python bench/bench_startup.py
    /work/venv/bin/python bench/bench_startup.py --runs 50

Prints median, min and max per command beside the target (<= 150 ms median); asserts nothing
about time.
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from installed import astra_executable

TARGET_MS = 150.0


def completion_env(words: str) -> dict[str, str]:
    cword = len(words.split()) - (0 if words.endswith(" ") else 1)
    return {"_ASTRA_COMPLETE": "complete_bash", "COMP_WORDS": words, "COMP_CWORD": str(cword)}


def time_runs(command: list[str], env: dict[str, str], runs: int, expect: str) -> list[float]:
    """Milliseconds of each run; the output of the untimed first run must contain `expect`."""
    first = subprocess.run(command, env=env, capture_output=True, text=True)
    if first.returncode != 0 or expect not in first.stdout:
        sys.exit(
            f"bench_startup: {' '.join(command)} exited {first.returncode} "
            f"without {expect!r} in its output:\n{first.stdout[:500]}{first.stderr[-2000:]}"
        )
    times = []
    for _ in range(runs):
        clock = time.perf_counter()
        subprocess.run(command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        times.append((time.perf_counter() - clock) * 1e3)
    return times


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=20, help="timed runs per command")
    args = parser.parse_args()

    astra = astra_executable("bench_startup")
    spec = importlib.util.find_spec("astra_cli")
    print(
        f"astra: {astra} (astra_cli from {Path(spec.origin).parent if spec else '?'}); Python "
        f"{sys.version.split()[0]}; {os.cpu_count()} cores, load average "
        f"{os.getloadavg()[0]:.2f}; PYTHONDONTWRITEBYTECODE="
        f"{os.environ.get('PYTHONDONTWRITEBYTECODE', '')!r}"
    )
    cases = [
        ("python -c pass (the interpreter alone)", [sys.executable, "-c", "pass"], {}, ""),
        ("astra --help", [astra, "--help"], {}, "analyse"),
        (
            'completion: COMP_WORDS="astra analyse "',
            [astra],
            completion_env("astra analyse "),
            "grid",
        ),
        (
            'completion: COMP_WORDS="astra analyse grid --"',
            [astra],
            completion_env("astra analyse grid --"),
            "--continuum-order",
        ),
    ]
    as_is = dict(os.environ)
    with tempfile.TemporaryDirectory(prefix="astra-pycache-") as cache:
        compiled = {
            key: value for key, value in os.environ.items() if key != "PYTHONDONTWRITEBYTECODE"
        }
        compiled["PYTHONPYCACHEPREFIX"] = cache
        for title, env in (
            ("in this environment", as_is),
            ("with bytecode cached (PYTHONPYCACHEPREFIX, no PYTHONDONTWRITEBYTECODE)", compiled),
        ):
            print(f"\n{title}: {args.runs} runs each, ms; target: median <= {TARGET_MS:g} ms")
            print(f"{'command':<46} {'median':>7} {'min':>7} {'max':>7}")
            for label, command, extra_env, expect in cases:
                times = time_runs(command, {**env, **extra_env}, args.runs, expect)
                median = statistics.median(times)
                verdict = ""
                if command[0] == astra:
                    verdict = "  met" if median <= TARGET_MS else "  MISSED"
                print(f"{label:<46} {median:7.1f} {min(times):7.1f} {max(times):7.1f}{verdict}")


if __name__ == "__main__":
    main()
