"""Memory of `astra analyse grid` on a large grid: the summed peak PSS of every process of the
invocation (the invoking process, its loky or dask workers and their helpers), for 1, 2 and 3
workers.

PSS (proportional set size, /proc/PID/smaps_rollup) counts a page shared by n processes as 1/n
in each, so the sum over processes is the memory the invocation really holds: a memory-mapped
grid counts once however many workers map it. The sampler reads every process of the tree
every 50 ms and keeps the largest sum.

    python bench/bench_grid_memory.py                         # the 0.97 GB grid, FERRE binary
    python bench/bench_grid_memory.py --grid my.hdr --spectra 'data/apStar-*.fits'
    python bench/bench_grid_memory.py --dask                  # also on a local dask cluster

Without --grid, the grid of bench_grid_formats.py (28,413 nodes x 8,575 pixels, float32) is
written as FERRE binary first (a minute), and 20 demo apStar spectra inside it. Prints the
figures; asserts nothing. Also prints the model loads: more loads than workers would mean that
loky's memory-leak guard (it restarts a worker whose RSS grew by 300 MB after its first task)
mistook the mapped grid for a leak.
"""

from __future__ import annotations

import argparse
import glob
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np
from installed import astra_executable

SAMPLE_SECONDS = 0.05


def descendants(root: int) -> list[int]:
    """root and every process below it, from /proc."""
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as handle:
                parent = int(handle.read().rsplit(")", 1)[1].split()[1])
        except (OSError, IndexError, ValueError):
            continue
        children.setdefault(parent, []).append(int(entry))
    found, todo = [], [root]
    while todo:
        pid = todo.pop()
        found.append(pid)
        todo.extend(children.get(pid, []))
    return found


def pss_kb(pid: int) -> int:
    try:
        with open(f"/proc/{pid}/smaps_rollup") as handle:
            for line in handle:
                if line.startswith("Pss:"):
                    return int(line.split()[1])
    except OSError:
        pass
    return 0


def run(command: list[str]) -> dict:
    """Run the invocation, sampling its tree's PSS; returns its summary and the peaks."""
    process = subprocess.Popen(
        command, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True
    )
    peak = {"sum_kb": 0, "processes": 0, "each_kb": []}
    done = threading.Event()

    def sample() -> None:
        while not done.is_set():
            tree = descendants(process.pid)
            sizes = [pss_kb(pid) for pid in tree]
            if sum(sizes) > peak["sum_kb"]:
                peak.update(sum_kb=sum(sizes), processes=len(tree), each_kb=sorted(sizes))
            time.sleep(SAMPLE_SECONDS)

    sampler = threading.Thread(target=sample)
    sampler.start()
    clock = time.perf_counter()
    stdout, _ = process.communicate()
    done.set()
    sampler.join()
    summary = json.loads(stdout) if stdout.strip() else {}
    return {"summary": summary, "wall_s": time.perf_counter() - clock, **peak}


def prepare(directory: Path, count: int) -> tuple[Path, list[str]]:
    sys.path.insert(0, str(Path(__file__).parent))
    from bench_grid_formats import make_grid

    from astra_cli.demo.dataset import write_apstar
    from astra_cli.io.grids import write_grid

    grid_path = directory / "grid.hdr"
    if not grid_path.exists():
        write_grid(make_grid((41, 33, 21)), grid_path, "ferre-binary")
    rng = np.random.default_rng(3)
    paths = []
    for index in range(count):
        labels = np.array([rng.uniform(4200, 6200), rng.uniform(1.5, 4.0), rng.uniform(-1.2, 0.2)])
        path = directory / f"apStar-bench-{index:03d}.fits"
        write_apstar(path, labels, 100.0, rng, f"2M{index:08d}+0000000", 0.0)
        paths.append(str(path))
    return grid_path, paths


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--grid", type=Path, help="a grid file (default: make the 1 GB one)")
    parser.add_argument("--spectra", help="a glob of spectra (default: 20 demo apStar files)")
    parser.add_argument("--count", type=int, default=20, help="demo spectra to write")
    parser.add_argument("--directory", type=Path, help="where to write the grid and spectra")
    parser.add_argument("--jobs", default="1,2,3", help="worker counts to measure")
    parser.add_argument("--dask", action="store_true", help="also on a local dask cluster")
    args = parser.parse_args()
    astra = astra_executable("bench_grid_memory.py")

    with tempfile.TemporaryDirectory() as scratch:
        directory = args.directory or Path(scratch)
        directory.mkdir(parents=True, exist_ok=True)
        if args.grid:
            grid, spectra = args.grid, sorted(glob.glob(args.spectra or ""))
        else:
            grid, spectra = prepare(directory, args.count)
        size = sum(p.stat().st_size for p in (grid, grid.with_suffix(".unf")) if p.exists())
        print(f"grid {grid}: {size / 1e9:.2f} GB on disk; {len(spectra)} spectra")
        print(f"{'backend':8s} {'jobs':>4s} {'peak summed PSS MB':>19s} {'processes':>9s} "
              f"{'model loads':>11s} {'ok':>4s} {'wall s':>7s}  largest (MB)")  # fmt: skip
        backends = [("loky", int(j)) for j in args.jobs.split(",")]
        if args.dask:
            backends.append(("dask", 2))
        previous = None
        for backend, jobs in backends:
            out = directory / f"out-{backend}-{jobs}"
            command = [
                astra, "analyse", "grid", *spectra, "--grid", str(grid), "-o", str(out),
                "--jobs", str(jobs), "--backend", backend, "--force", "--json", "--quiet",
            ]  # fmt: skip
            found = run(command)
            summary = found["summary"]
            largest = ", ".join(f"{kb / 1024:.0f}" for kb in found["each_kb"][::-1][:4])
            print(f"{backend:8s} {jobs:4d} {found['sum_kb'] / 1024:19.0f} {found['processes']:9d} "
                  f"{summary.get('model_loads', '?'):>11} {summary.get('ok', '?'):>4} "
                  f"{found['wall_s']:7.1f}  {largest}")  # fmt: skip
            if backend == "loky" and previous is not None:
                print(f"         one more worker: +{(found['sum_kb'] - previous) / 1024:.0f} MB")
            previous = found["sum_kb"] if backend == "loky" else previous


if __name__ == "__main__":
    main()
