"""Accuracy of the science methods on a large demo set: rms and bias of recovered - true for
grid (Teff, logg, [M/H]), cannon (trained on a separate set) and rv (velocities -300..+300
km/s), at S/N 100, beside the targets. The tests check the same on 16 stars.

    python bench/bench_accuracy.py [--stars 1000] [--training 300] [--snr 100] [--dir DIR]

Prints figures; asserts nothing.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

from astra_cli.demo.dataset import DemoConfig, write_demo
from astra_cli.demo.report import analyse_demo


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--stars", type=int, default=1000)
    parser.add_argument("--training", type=int, default=300)
    parser.add_argument("--snr", type=float, default=100.0)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument(
        "--dir", type=Path, help="where to write the data set (default: a temp dir)"
    )
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as scratch:
        directory = args.dir or Path(scratch)
        start = time.perf_counter()
        files = write_demo(directory, DemoConfig(args.stars, args.training, args.snr, args.seed))
        written = time.perf_counter() - start
        summaries, rows = analyse_demo(files, directory / "astra-output")
        analysed = time.perf_counter() - start - written

    print(f"{args.stars} test stars at S/N {args.snr:g}, Cannon trained on {args.training}")
    print(f"written in {written:.1f} s; analysed in {analysed:.1f} s "
          f"({', '.join(f'{s.method} {s.ok} ok' for s in summaries)})")  # fmt: skip
    print(f"{'method':<7} {'label':<6} {'n':>5} {'rms':>9} {'bias':>9} {'target':>7}")
    for row in rows:
        verdict = "met" if row.met else "MISSED"
        print(f"{row.method:<7} {row.label:<6} {row.n:>5} {row.rms:>9.4g} {row.bias:>+9.3g} "
              f"{row.target:>7g}  {verdict}")  # fmt: skip


if __name__ == "__main__":
    main()
