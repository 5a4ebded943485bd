"""Read and plan a large CSV manifest against a store that already holds many done runs.

The figure issue 4 asks for: a 1,000,000-row manifest (100,000 observations x 10 values of a
significant option) planned against a store holding 500,000 done runs, in <= 10 s and <= 2 GB
peak memory on 2 cores. The measured part is exactly what `astra plan METHOD --from-file
FILE` does before it prints: read the manifest, resolve the identifiers, build the request
sets, look up the store in one query, group and chunk. It runs in a fresh process, so its peak
resident memory (ru_maxrss) is that of the planning alone, interpreter and imports included.

    /work/venv/bin/python bench/bench_planner.py               # the full size
    /work/venv/bin/python bench/bench_planner.py --rows 100000 # quicker

Prints figures; asserts nothing about time.
"""

from __future__ import annotations

import argparse
import json
import resource
import sqlite3
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from astra_cli.methods.base import Method, Param

IDENTIFIER = {"release": "dr17", "apred": "dr17", "telescope": "apo25m"}


class Sweep(Method):
    """Stands in for a method with one significant option, swept over ten values."""

    name = "bench"
    order = Param(5, help="The swept option.")


def write_manifest(path: Path, observations: int, values: int) -> None:
    """`values` rows per observation, one per option value, as a sweep written out by hand."""
    with path.open("w") as out:
        out.write("release,apred,telescope,field,obj,order\n")
        for star in range(observations):
            field = f"{star % 997:03d}+{star % 89:02d}"
            obj = f"2M{star:08d}+0000000"
            prefix = f"dr17,dr17,apo25m,{field},{obj},"
            out.writelines(f"{prefix}{value}\n" for value in range(values))


def write_store(output_dir: Path, observations: int, values: int, done: int) -> None:
    """`done` ok runs, the first groups filled first, written straight into SQLite."""
    from astra_cli.engine.planner import group_key
    from astra_cli.io.identifiers import IdentifierResolver
    from astra_cli.io.store import ResultsStore

    ResultsStore(output_dir).close()  # the schema
    resolver = IdentifierResolver(output_dir / "sas")
    keys = [
        resolver.resolve(
            {
                **IDENTIFIER,
                "field": f"{star % 997:03d}+{star % 89:02d}",
                "obj": f"2M{star:08d}+0000000",
            }
        ).key
        for star in range(min(observations, done))
    ]
    rows = (
        (group_key(Sweep.name, Sweep.version, {"order": value}), key, json.dumps({"order": value}))
        for value in range(values)
        for key in keys
    )
    connection = sqlite3.connect(output_dir / "astra.sqlite")
    with connection:
        connection.executemany(
            "INSERT INTO runs (group_key, observation, method, method_version, options, "
            "input_path, status, astra_version) VALUES (?, ?, 'bench', '1', ?, '', 'ok', 'bench')",
            (row for _, row in zip(range(done), rows, strict=False)),
        )
    connection.close()


def measure(manifest: Path, output_dir: Path, jobs: int) -> dict:
    """The measured part, in this (fresh) process."""
    clock = time.perf_counter()
    from astra_cli import api

    imported = time.perf_counter()
    inputs = api.collect_inputs(Sweep, from_file=[str(manifest)], data_root=output_dir / "sas")
    read = time.perf_counter()
    plan = api.prepare(
        Sweep, inputs.observations, {}, manifests=inputs.manifests, output_dir=output_dir, jobs=jobs
    )
    planned = time.perf_counter()
    return {
        "import_s": imported - clock,
        "read_s": read - imported,
        "plan_s": planned - read,
        "total_s": planned - clock,
        "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        "rows": inputs.manifests.rows,
        "groups": len(plan.groups),
        "requested": plan.requested,
        "already_done": plan.already_done,
        "to_run": plan.to_run,
        "chunks": len(plan.chunks),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000, help="manifest rows")
    parser.add_argument("--values", type=int, default=10, help="option values per observation")
    parser.add_argument("--done", type=int, help="done runs in the store [default: rows / 2]")
    parser.add_argument("--jobs", type=int, default=2, help="workers the plan is chunked for")
    parser.add_argument(
        "--measure", nargs=2, metavar=("MANIFEST", "OUTPUT_DIR"), help=argparse.SUPPRESS
    )
    args = parser.parse_args()
    if args.measure:
        print(json.dumps(measure(Path(args.measure[0]), Path(args.measure[1]), args.jobs)))
        return

    observations = args.rows // args.values
    done = args.rows // 2 if args.done is None else args.done
    with tempfile.TemporaryDirectory(prefix="astra-bench-") as tmp:
        manifest, output_dir = Path(tmp) / "manifest.csv", Path(tmp) / "out"
        clock = time.perf_counter()
        write_manifest(manifest, observations, args.values)
        write_store(output_dir, observations, args.values, done)
        print(
            f"setup: {observations * args.values:,} rows ({observations:,} observations x "
            f"{args.values} values, {manifest.stat().st_size / 1e6:.0f} MB), store with "
            f"{done:,} done runs: {time.perf_counter() - clock:.1f} s"
        )
        clock = time.perf_counter()
        measured = subprocess.run(
            [
                sys.executable,
                __file__,
                "--jobs",
                str(args.jobs),
                "--measure",
                str(manifest),
                str(output_dir),
            ],
            check=True,
            capture_output=True,
            text=True,
        )
        process_s = time.perf_counter() - clock
    figures = json.loads(measured.stdout)
    print(
        f"read manifest: {figures['read_s']:.2f} s; plan against the store: "
        f"{figures['plan_s']:.2f} s; total {figures['total_s']:.2f} s "
        f"(imports {figures['import_s']:.2f} s)"
    )
    print(f"the whole planning process, interpreter start to exit: {process_s:.2f} s")
    print(f"peak memory (ru_maxrss of the planning process): {figures['peak_rss_mb']:.0f} MB")
    print(
        f"plan: {figures['rows']:,} rows -> {figures['requested']:,} runs in {figures['groups']} "
        f"groups, {figures['already_done']:,} already done, {figures['to_run']:,} to run in "
        f"{figures['chunks']:,} chunks"
    )


if __name__ == "__main__":
    main()
