"""A dask cluster of your own: its workers as dask's nanny starts them, against the same workers
keeping their freed memory, and against astra's own loky workers.

    python bench/bench_dask_heap.py                      # N = 2,000, 2 workers
    python bench/bench_dask_heap.py --n 200 --repeat 1   # a quick check that everything runs

dask's nanny starts every worker with MALLOC_TRIM_THRESHOLD_=65536 (its
`distributed.nanny.pre-spawn-environ`). Setting it turns off glibc's own raising of its mmap
threshold: every array over 128 KB is then mapped on its own and unmapped as it is freed, and
the next chunk's arrays are faulted in again, zeroed by the kernel. The
workers astra starts itself (a local cluster's, SLURM jobs', loky's) keep up to 256 MB of
freed memory instead (`engine.worker.keep_freed_heap`); a cluster of your own is left as you
started it. This script starts a scheduler and --workers workers (`dask worker --nthreads 1
--memory-limit 0`, on this machine) twice, with dask's environment and with
MALLOC_TRIM_THRESHOLD_ and MALLOC_MMAP_THRESHOLD_ set to what astra sets, and runs
`astra analyse grid --backend dask --scheduler-file ...` on N demo apStar files: once to load
the models, then --repeat times into fresh output directories. For each run it prints the
wall seconds and, read from /proc, the workers' user and system CPU seconds and minor page
faults; then `astra analyse --jobs WORKERS` (loky) on the same files. Linux only (/proc).
"""

from __future__ import annotations

import os

BLAS_VARIABLES = ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS")
for variable in BLAS_VARIABLES:
    os.environ[variable] = "1"

import argparse  # noqa: E402
import contextlib  # noqa: E402
import json  # noqa: E402
import subprocess  # noqa: E402
import sys  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
from collections.abc import Iterator  # noqa: E402
from pathlib import Path  # noqa: E402

from bench_batching import Dataset, astra_source, cores, write_dataset  # noqa: E402
from installed import astra_executable  # noqa: E402

from astra_cli.engine.worker import HEAP_KEPT_BYTES, HEAP_LARGEST_BLOCK  # noqa: E402

HEAP_KEPT_ENVIRONMENT = {
    "MALLOC_TRIM_THRESHOLD_": str(HEAP_KEPT_BYTES),
    "MALLOC_MMAP_THRESHOLD_": str(HEAP_LARGEST_BLOCK),
}
"""What `keep_freed_heap` sets with mallopt, as glibc reads it from the environment. The nanny
passes MALLOC_TRIM_THRESHOLD_ on from its own environment in place of its 65536."""
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


@contextlib.contextmanager
def standing_cluster(scratch: Path, workers: int, environment: dict[str, str]) -> Iterator[Path]:
    """A scheduler and `workers` single-threaded workers started as a user would, each in the
    given environment; the scheduler file, once every worker has joined."""
    from distributed import Client

    dask = str(Path(sys.executable).with_name("dask"))
    scheduler_file = scratch / f"scheduler-{time.monotonic_ns()}.json"
    quiet = {"stdout": subprocess.DEVNULL, "stderr": subprocess.DEVNULL}
    where = ("--scheduler-file", str(scheduler_file), "--no-dashboard")
    scheduler = [dask, "scheduler", "--host", "127.0.0.1", "--port", "0", *where]
    worker = [dask, "worker", *where, "--nthreads", "1", "--memory-limit", "0"]
    processes = [subprocess.Popen(scheduler, **quiet)]
    try:
        for _ in range(workers):
            processes.append(subprocess.Popen(worker, env={**os.environ, **environment}, **quiet))
        deadline = time.monotonic() + 60
        while not scheduler_file.is_file() and time.monotonic() < deadline:
            time.sleep(0.1)
        with Client(scheduler_file=str(scheduler_file), set_as_default=False) as client:
            client.wait_for_workers(workers, timeout=60)
        yield scheduler_file
    finally:
        for process in reversed(processes):
            process.terminate()
        for process in processes:
            process.wait(timeout=30)


def worker_pids(scheduler_file: Path) -> list[int]:
    from distributed import Client

    with Client(scheduler_file=str(scheduler_file), set_as_default=False) as client:
        return sorted(client.run(os.getpid).values())


def cpu_and_faults(pids: list[int]) -> tuple[float, float, int]:
    """User and system CPU seconds and minor page faults of these processes, so far."""
    user = system = faults = 0
    for pid in pids:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        faults += int(fields[7])
        user += int(fields[11])
        system += int(fields[12])
    return user / CLOCK_TICKS, system / CLOCK_TICKS, faults


def analyse(data: Dataset, output_dir: Path, backend: list[str]) -> float:
    command = [
        astra_executable("bench_dask_heap"),
        *("analyse", "grid", "--from-file", str(data.manifest), "--grid", str(data.grid)),
        *("--json", "--quiet", "--output-dir", str(output_dir), *backend),
    ]
    clock = time.perf_counter()
    done = subprocess.run(command, capture_output=True, text=True)
    seconds = time.perf_counter() - clock
    if done.returncode != 0 or json.loads(done.stdout)["ok"] != len(data.paths):
        sys.exit(f"bench_dask_heap: {' '.join(command)} exited {done.returncode}:\n{done.stderr}")
    return seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=2000, help="apStar files [default: 2000]")
    parser.add_argument("--workers", type=int, default=2, help="dask workers [default: 2]")
    parser.add_argument("--repeat", type=int, default=3, help="timed runs of each [default: 3]")
    parser.add_argument("--data", type=Path, help="keep (and reuse) the files in this directory")
    args = parser.parse_args()
    if not Path("/proc/self/stat").is_file():
        sys.exit("bench_dask_heap: reads the workers' CPU and page faults from /proc (Linux)")
    print(
        f"machine: {cores()} cores usable, load average {os.getloadavg()[0]:.2f}; one BLAS "
        f"thread per process\nastra: {astra_executable('bench_dask_heap')}; {astra_source()}"
    )
    with tempfile.TemporaryDirectory(prefix="astra-dask-heap-") as tmp:
        scratch = Path(tmp)
        data = write_dataset(args.data or scratch / "data", args.n, 100.0, 6)
        settings = {"dask's environment": {}, "heap kept": HEAP_KEPT_ENVIRONMENT}
        for index, (name, environment) in enumerate(settings.items()):
            with standing_cluster(scratch, args.workers, environment) as scheduler_file:
                backend = ["--backend", "dask", "--scheduler-file", str(scheduler_file)]
                pids = worker_pids(scheduler_file)
                analyse(data, scratch / f"warm-up-{index}", backend)  # the workers load the model
                for attempt in range(args.repeat):
                    before = cpu_and_faults(pids)
                    seconds = analyse(data, scratch / f"dask-{index}-{attempt}", backend)
                    user, system, faults = (
                        after - start
                        for after, start in zip(cpu_and_faults(pids), before, strict=True)
                    )
                    print(
                        f"{name:>18}, run {attempt + 1}: {seconds:6.2f} s; its {args.workers} "
                        f"workers {user:6.2f} s user, {system:5.2f} s system, "
                        f"{faults:,.0f} page faults"
                    )
        for attempt in range(args.repeat):
            seconds = analyse(data, scratch / f"loky-{attempt}", ["--jobs", str(args.workers)])
            print(f"{'loky':>18}, run {attempt + 1}: {seconds:6.2f} s")


if __name__ == "__main__":
    main()
