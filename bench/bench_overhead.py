"""Engine overhead: astra against luigi's batch mode and against the floor, side by side.

    python bench/bench_overhead.py                 # N = 2,000
    python bench/bench_overhead.py --n 200         # a quick check that everything runs
    python bench/bench_overhead.py --data /tmp/astra-bench-data --luigi-venv /tmp/luigi-venv

N demo apStar files (default 2,000; `--data DIR` keeps and reuses them) are fitted with the
`grid` method through its public Method API (`load_model`, `read_observation`,
`analyse_batch`) with one group (`--continuum-order 4`) and with two (4 and 3), by:

astra  `astra analyse grid --from-file MANIFEST --jobs JOBS --json` as a subprocess of the
       installed console script, into a fresh output directory;
luigi  luigi's batch mode, the engine of the original Astra (its batching-tasks page): one task
       per run whose path parameter is batchable (`batch_method`), 2 workers and the local
       scheduler; a batch loads its group's model once, reads and fits each spectrum and writes
       each task's output file, which is how luigi knows a task is complete. luigi is installed
       by this script with pip into a throwaway virtualenv (`--luigi-venv DIR` keeps it) that
       sees this interpreter's packages; skipped with a message where it cannot be;
floor  JOBS processes, each loading each group's model once and looping through its share of
       the observations (every JOBS-th), with no store.

Each is timed from outside, from spawning its processes to the last one's exit, so every
contender pays its interpreter start and imports. Every process runs with one BLAS thread
(set below, before numpy is imported, and inherited). Before each run, the machine is let
settle: dirty pages written (sync) and SETTLE_SECONDS of rest, so that what one contender
leaves the kernel to do (the writeback and unlinking of luigi's 2,000 output files, processes
still exiting) is not charged to the next.

astra and the floor run in pairs, --repeat times (default 10), each pair in the other order;
luigi joins the first --luigi-repeat pairs (default 3), far enough behind not to need more. The
speed of a shared machine drifts: on 2 cores on 2026-12-07, 20 runs of the floor in 7 minutes
took 7.9 to 10.9 s, and of two runs of astra one after the other, one spent 15.6 CPU seconds
and the other 21.0 (CPU seconds do not tell a slower run from a slower machine either). A
best-of ratio then rests on one lucky run of either contender. astra/floor is therefore the
geometric mean of the pairs' ratios, each pair's two runs seconds apart, with a bootstrap 95%
interval, and the verdict is "met" only when the whole interval is at or below the target,
"MISSED" when it is all above, and undecided otherwise (more pairs narrow it). The best of each
contender and their ratio are printed too. Beside each run's seconds: the CPU its processes
spent (user and system, of every process waited for: loky's helpers may be left out) and the
CPU the machine's host took from it (steal, for the whole machine, from /proc/stat; Linux).
Then: a no-op rerun of the 1-group request (every run done), best of 3, and `astra --help`,
median of --help-runs (default 20).

Prints every figure and the ratios beside their targets (astra / floor <= 1.05; luigi /
astra >= 1.5 with 1 group, >= 1.05 with 2; no-op rerun <= 0.3 s; --help <= 150 ms); asserts
nothing about time (a busy machine makes every figure worse).
"""

from __future__ import annotations

import os

BLAS_VARIABLES = ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS")
for variable in BLAS_VARIABLES:
    os.environ[variable] = "1"

import argparse  # noqa: E402
import json  # noqa: E402
import math  # noqa: E402
import random  # noqa: E402
import resource  # noqa: E402
import shutil  # noqa: E402
import statistics  # noqa: E402
import subprocess  # noqa: E402
import sys  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
from collections.abc import Callable, Sequence  # noqa: E402
from dataclasses import dataclass  # noqa: E402
from functools import partial  # noqa: E402
from pathlib import Path  # noqa: E402

from bench_batching import Dataset, astra_source, cores, order_flags, write_dataset  # noqa: E402
from installed import astra_executable  # noqa: E402

from astra_cli.engine.planner import MAX_CHUNK_SIZE  # noqa: E402

LUIGI_REQUIREMENT = "luigi>=3,<4"
TARGET_FLOOR = 1.05
TARGET_LUIGI = {1: 1.5, 2: 1.05}
TARGET_NOOP_S = 0.3
TARGET_HELP_MS = 150.0
SETTLE_SECONDS = 1.0
BOOTSTRAP = 10_000
"""Resamples of the pairs' ratios for the interval around their mean."""
FLOOR_CHUNK = MAX_CHUNK_SIZE
"""Spectra per `analyse_batch` call in the floor and in luigi's loop: astra's largest
chunk, where the grid's fit vectorises best."""

LUIGI_TASKS = '''
"""luigi's batch mode on the grid method, as the original Astra ran it (written by
bench_overhead.py). argv: manifest, grid, output directory, workers, continuum orders..."""
import sys
from pathlib import Path

import luigi

from astra_cli.methods.grid import Grid

CHUNK = {chunk}


class FitGrid(luigi.Task):
    path = luigi.Parameter(batch_method="\\n".join)
    grid = luigi.Parameter()
    continuum_order = luigi.IntParameter()
    output_dir = luigi.Parameter()

    def output(self):
        return [
            luigi.LocalTarget(f"{{self.output_dir}}/{{self.continuum_order}}/{{Path(p).stem}}.json")
            for p in self.path.split("\\n")
        ]

    def run(self):
        method = Grid(grid=self.grid, continuum_order=self.continuum_order)
        model = method.load_model()
        paths, targets = self.path.split("\\n"), self.output()
        for start in range(0, len(paths), CHUNK):
            spectra = [method.read_observation(p) for p in paths[start : start + CHUNK]]
            results = method.analyse_batch(model, spectra)
            for target, result in zip(targets[start : start + CHUNK], results):
                with target.open("w") as out:
                    out.write(repr(result))


if __name__ == "__main__":
    manifest, grid, output_dir, workers, *orders = sys.argv[1:]
    paths = Path(manifest).read_text().split()
    tasks = [
        FitGrid(path=p, grid=grid, continuum_order=int(o), output_dir=output_dir)
        for o in orders
        for p in paths
    ]
    ok = luigi.build(tasks, workers=int(workers), local_scheduler=True, log_level="WARNING")
    sys.exit(0 if ok else 1)
'''


def settle() -> None:
    """Dirty pages written and a rest: a quiet machine for the next timed run."""
    os.sync()
    time.sleep(SETTLE_SECONDS)


def children_cpu() -> float:
    """User and system CPU seconds of the child processes waited for so far, their own
    children's included once those were waited for."""
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def stolen() -> float | None:
    """CPU seconds the host has taken from this machine since it booted (all cores), or None
    where /proc/stat does not say."""
    try:
        fields = Path("/proc/stat").read_text().split("\n", 1)[0].split()
        return int(fields[8]) / os.sysconf("SC_CLK_TCK")
    except (OSError, IndexError, ValueError):
        return None


def timed(command: list[str], what: str) -> tuple[float, str]:
    """Wall seconds of one subprocess, and its stdout; exits the bench if it fails."""
    clock = time.perf_counter()
    done = subprocess.run(command, capture_output=True, text=True)
    seconds = time.perf_counter() - clock
    if done.returncode != 0:
        sys.exit(f"bench_overhead: {what} exited {done.returncode}:\n{done.stderr[-3000:]}")
    return seconds, done.stdout


def astra_command(data: Dataset, orders: list[int], jobs: int, output_dir: Path) -> list[str]:
    return [
        astra_executable("bench_overhead"),
        *("analyse", "grid", "--from-file", str(data.manifest), "--grid", str(data.grid)),
        *order_flags(orders),
        *("--jobs", str(jobs), "--json", "--quiet", "--output-dir", str(output_dir)),
    ]


def run_astra(data: Dataset, orders: list[int], jobs: int, output_dir: Path) -> float:
    seconds, out = timed(astra_command(data, orders, jobs, output_dir), "astra analyse")
    summary = json.loads(out)
    expected = len(data.paths) * len(orders)
    if summary["ok"] != expected:
        sys.exit(f"bench_overhead: astra ran {summary['ok']} ok of {expected}: {summary}")
    return seconds


def run_floor(data: Dataset, orders: list[int], jobs: int) -> float:
    """JOBS loop processes at once, from spawning the first to the last one's exit."""
    command = [sys.executable, __file__, "--floor-part", str(data.manifest), str(data.grid)]
    clock = time.perf_counter()
    parts = [
        subprocess.Popen([*command, f"{part}/{jobs}", *map(str, orders)]) for part in range(jobs)
    ]
    codes = [process.wait() for process in parts]
    seconds = time.perf_counter() - clock
    if any(codes):
        sys.exit(f"bench_overhead: a floor process exited {codes}")
    return seconds


def floor_part(manifest: str, grid: str, share: str, *orders: str) -> None:
    """One floor process: its share of the observations, each group's model loaded once."""
    from astra_cli.methods.grid import Grid

    part, jobs = map(int, share.split("/"))
    paths = Path(manifest).read_text().split()[part::jobs]
    for order in map(int, orders):
        method = Grid(grid=grid, continuum_order=order)
        model = method.load_model()
        for start in range(0, len(paths), FLOOR_CHUNK):
            spectra = [method.read_observation(p) for p in paths[start : start + FLOOR_CHUNK]]
            assert len(method.analyse_batch(model, spectra)) == len(spectra)


def luigi_python(venv: Path) -> Path | str:
    """The throwaway virtualenv's interpreter with luigi installed and astra importable (a
    .pth file names this interpreter's site-packages and astra's source), or why not."""
    import site

    import astra_cli

    python = venv / "bin" / "python"
    try:
        if not python.is_file():
            subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
        probe = subprocess.run([str(python), "-c", "import luigi"], capture_output=True)
        if probe.returncode != 0:
            subprocess.run(
                [str(python), "-m", "pip", "install", "-q", LUIGI_REQUIREMENT],
                check=True,
                capture_output=True,
            )
    except (OSError, subprocess.CalledProcessError) as error:
        stderr = getattr(error, "stderr", b"") or b""
        return f"cannot install {LUIGI_REQUIREMENT} into {venv}: {error} {stderr.decode()[-500:]}"
    (site_dir,) = Path(venv).glob("lib/python*/site-packages")
    source = Path(astra_cli.__file__).resolve().parent.parent
    (site_dir / "astra-bench.pth").write_text("\n".join([*site.getsitepackages(), str(source)]))
    return python


def run_luigi(python: Path, script: Path, data: Dataset, orders: list[int], jobs: int) -> float:
    with tempfile.TemporaryDirectory(prefix="luigi-out-") as out:
        command = [str(python), str(script), str(data.manifest), str(data.grid), out, str(jobs)]
        seconds, _ = timed([*command, *map(str, orders)], "luigi")
        written = sum(1 for _ in Path(out).rglob("*.json"))
    if written != len(data.paths) * len(orders):
        sys.exit(f"bench_overhead: luigi wrote {written} of {len(data.paths) * len(orders)}")
    return seconds


def verdict(value: float, target: float, at_least: bool = False) -> str:
    met = value >= target if at_least else value <= target
    return f"target {'>=' if at_least else '<='} {target:g}: {'met' if met else 'MISSED'}"


@dataclass
class Run:
    seconds: float
    cpu: float
    """User and system CPU seconds of its processes that were waited for."""
    steal: float | None
    """CPU seconds the host took from the whole machine meanwhile, where known."""

    def __str__(self) -> str:
        steal = "" if self.steal is None else f", steal {self.steal:.2f} s"
        return f"{self.seconds:.2f} s (CPU {self.cpu:.2f} s{steal})"


def measured(contender: Callable[[], float]) -> Run:
    """Let the machine settle, then run a contender: its seconds, CPU and the steal."""
    settle()
    cpu, steal = children_cpu(), stolen()
    seconds = contender()
    steal_after = stolen()
    return Run(
        seconds,
        children_cpu() - cpu,
        None if steal is None or steal_after is None else steal_after - steal,
    )


def paired_ratio(ratios: Sequence[float]) -> tuple[float, float, float]:
    """The geometric mean of paired ratios, and the bootstrap 95% interval around it."""
    logs = [math.log(ratio) for ratio in ratios]
    draw = random.Random(0)
    means = [statistics.fmean(draw.choices(logs, k=len(logs))) for _ in range(BOOTSTRAP)]
    cuts = statistics.quantiles(means, n=40)  # every 2.5%
    return math.exp(statistics.fmean(logs)), math.exp(cuts[0]), math.exp(cuts[-1])


def interval_verdict(low: float, high: float, target: float) -> str:
    if high <= target:
        return f"target <= {target:g}: met"
    if low > target:
        return f"target <= {target:g}: MISSED"
    return f"target <= {target:g}: undecided, the interval holds it; more --repeat narrows it"


def compare(
    orders: list[int],
    args: argparse.Namespace,
    data: Dataset,
    luigi: tuple[Path, Path] | None,
    scratch: Path,
) -> tuple[dict[str, float], list[float]]:
    """The pairs of astra and the floor (luigi in the first ones) for one set of groups: the
    best seconds of each contender, and each pair's astra/floor. `luigi`: its interpreter and
    script, if it runs."""
    best: dict[str, float] = {}
    ratios = []
    for attempt in range(args.repeat):
        output_dir = scratch / f"astra-{len(orders)}-{attempt}"
        contenders: dict[str, Callable[[], float]] = {
            "astra": partial(run_astra, data, orders, args.jobs, output_dir),
            "floor": partial(run_floor, data, orders, args.jobs),
        }
        if luigi is not None and attempt < args.luigi_repeat:
            contenders["luigi"] = partial(run_luigi, *luigi, data, orders, args.jobs)
        names = list(contenders)
        turn = attempt % len(names)
        runs = {name: measured(contenders[name]) for name in names[turn:] + names[:turn]}
        if attempt < args.repeat - 1 or len(orders) > 1:
            shutil.rmtree(output_dir)
        ratios.append(runs["astra"].seconds / runs["floor"].seconds)
        print(
            f"{len(orders)} group(s), {len(data.paths) * len(orders):,} runs, attempt "
            f"{attempt + 1}: "
            + ", ".join(f"{name} {runs[name]}" for name in names)
            + f"; astra/floor {ratios[-1]:.3f}"
        )
        for name, run in runs.items():
            best[name] = min(run.seconds, best.get(name, run.seconds))
    return best, ratios


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=2000, help="apStar files [default: 2000]")
    parser.add_argument("--jobs", type=int, default=2, help="workers of each [default: 2]")
    parser.add_argument(
        "--repeat", type=int, default=10, help="pairs of astra and the floor [default: 10]"
    )
    parser.add_argument(
        "--luigi-repeat", type=int, default=3, help="runs of luigi, in the first pairs"
    )
    parser.add_argument("--help-runs", type=int, default=20, help="timed `astra --help` runs")
    parser.add_argument("--data", type=Path, help="keep (and reuse) the files in this directory")
    parser.add_argument("--luigi-venv", type=Path, help="keep (and reuse) luigi's virtualenv")
    parser.add_argument("--no-luigi", action="store_true", help="leave luigi out")
    parser.add_argument("--floor-part", nargs="+", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.floor_part:
        floor_part(*args.floor_part)
        return
    if args.repeat < 2:
        parser.error("--repeat: at least 2 pairs, for an interval")

    print(
        f"machine: {cores()} cores usable, load average {os.getloadavg()[0]:.2f}; Python "
        f"{sys.version.split()[0]}; one BLAS thread per process"
    )
    print(f"astra: {astra_executable('bench_overhead')}; {astra_source()}")
    with tempfile.TemporaryDirectory(prefix="astra-overhead-") as tmp:
        scratch = Path(tmp)
        data = write_dataset(args.data or scratch / "data", args.n, 100.0, 6)
        luigi: tuple[Path, Path] | None = None
        if not args.no_luigi:
            python = luigi_python(args.luigi_venv or scratch / "luigi-venv")
            script = scratch / "luigi_tasks.py"
            script.write_text(LUIGI_TASKS.format(chunk=FLOOR_CHUNK))
            if isinstance(python, str):
                print(f"luigi: skipped ({python})")
            else:
                luigi = (python, script)
        rows = [
            (len(orders), *compare(orders, args, data, luigi, scratch)) for orders in ([4], [4, 3])
        ]
        done_dir = scratch / f"astra-1-{args.repeat - 1}"
        noop = [
            timed(astra_command(data, [4], args.jobs, done_dir), "no-op rerun")[0] for _ in range(3)
        ]
    help_ms = [
        1e3 * timed([astra_executable("bench_overhead"), "--help"], "astra --help")[0]
        for _ in range(args.help_runs + 1)
    ][1:]

    print(f"\nbest of each, seconds; N = {len(data.paths):,}, --jobs {args.jobs}")
    print(f"{'groups':>6} {'astra':>7} {'luigi':>7} {'floor':>7} {'astra/floor':>12} "
          f"{'luigi/astra':>12}")  # fmt: skip
    for groups, best, _ in rows:
        luigi_best = best.get("luigi")
        ratio = f"{luigi_best / best['astra']:12.2f}" if luigi_best else f"{'-':>12}"
        print(
            f"{groups:>6} {best['astra']:7.2f} {luigi_best or float('nan'):7.2f} "
            f"{best['floor']:7.2f} {best['astra'] / best['floor']:12.3f} {ratio}"
        )
    for groups, best, ratios in rows:
        mean, low, high = paired_ratio(ratios)
        print(
            f"{groups} group(s): astra/floor {mean:.3f}, 95% interval {low:.3f} to {high:.3f} "
            f"({len(ratios)} pairs {min(ratios):.3f} to {max(ratios):.3f}; "
            f"{interval_verdict(low, high, TARGET_FLOOR)})"
        )
        if "luigi" in best:
            print(
                f"{groups} group(s): luigi/astra {best['luigi'] / best['astra']:.2f}, best of "
                f"each ({verdict(best['luigi'] / best['astra'], TARGET_LUIGI[groups], True)})"
            )
    print(
        f"no-op rerun of {len(data.paths):,} runs: {min(noop):.2f} s best of {len(noop)} "
        f"({verdict(min(noop), TARGET_NOOP_S)})"
    )
    median = statistics.median(help_ms)
    print(
        f"astra --help: median {median:.0f} ms of {len(help_ms)} ({verdict(median, TARGET_HELP_MS)}"
        f"; PYTHONDONTWRITEBYTECODE={os.environ.get('PYTHONDONTWRITEBYTECODE', '')!r})"
    )


if __name__ == "__main__":
    main()
