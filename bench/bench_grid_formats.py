"""Grid file formats at ASPCAP scale: size on disk and load time of one grid as FERRE ASCII,
FERRE binary (.hdr + .unf) and astra FITS, and what `astra grid convert` costs.

The grid (default 41 x 33 x 21 = 28,413 nodes x 8,575 apStar pixels, float32: 0.97 GB) is made
of the demo's line model at a few hundred nodes, interpolated to the rest, so that its values
have the digits of a real grid. Each load runs in a fresh process, as a worker does:
`Grid.load_model()` (what a worker calls once per group), then one chi-square against every
node for one spectrum (which reads every page of the grid; `grid` itself searches a grid this
large through a coarse lattice). The page cache is warm (the files
were just written); the first figure after a reboot would add the disk's read time.

    python bench/bench_grid_formats.py                      # about 10 minutes, 5 GB of disk
    python bench/bench_grid_formats.py --shape 11,9,9       # the demo's size, a few seconds

Prints the figures; asserts nothing.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from astra_cli.demo.synthesis import normalised_flux
from astra_cli.io.grids import GridData, write_grid
from astra_cli.io.grids.model import LOGW_LOG10, Section
from astra_cli.science.wavelength import APSTAR_CDELT1, APSTAR_CRVAL1, apstar_wavelength

LLIMITS, STEPS = (3500.0, 0.0, -2.0), (100.0, 0.15, 0.125)

MEASURE = r"""
import json, sys, time
clock = time.perf_counter()
from astra_cli.methods.grid import Grid
import numpy as np
imported = time.perf_counter()
prepared, _ = Grid(grid=sys.argv[1]).load_model()
loaded = time.perf_counter()
grid = prepared.grid
y = np.asarray(grid.node_spectra(0, 1))
w = np.ones_like(y)
for start, stop in grid.node_blocks():  # every node once, as a full search reads them
    nodes = grid.node_spectra(start, stop)
    chi2 = (w * y * y).sum() - 2.0 * (w * y) @ nodes.T + w @ (nodes * nodes).T
swept = time.perf_counter()
print(json.dumps({"import_s": imported - clock, "load_s": loaded - imported,
                  "first_sweep_s": swept - loaded,
                  "mapped": not grid.data.values.flags.owndata}))
"""


def make_grid(shape: tuple[int, ...]) -> GridData:
    """The demo line model at every 4th node (or fewer), multilinearly filled in between."""
    wavelength = apstar_wavelength()
    coarse = [np.unique(np.linspace(0, n - 1, min(n, 6)).round().astype(int)) for n in shape]
    nodes = [LLIMITS[d] + STEPS[d] * np.arange(n) for d, n in enumerate(shape)]
    points = np.stack(
        [a.ravel() for a in np.meshgrid(*(nodes[d][coarse[d]] for d in range(3)), indexing="ij")],
        axis=1,
    )
    points[:, 0] = np.clip(points[:, 0], 3600.0, 7500.0)  # the line model's useful range
    anchor = normalised_flux(wavelength, points).astype(np.float32)
    anchor = anchor.reshape(*(len(c) for c in coarse), wavelength.size)
    values = np.empty((int(np.prod(shape)), wavelength.size), dtype=np.float32)
    index = np.stack(np.meshgrid(*(np.arange(n) for n in shape), indexing="ij"), -1).reshape(-1, 3)
    for start in range(0, len(index), 512):
        block = index[start : start + 512]
        position = [np.interp(block[:, d], coarse[d], np.arange(len(coarse[d]))) for d in range(3)]
        low = [
            np.clip(np.floor(p).astype(int), 0, len(coarse[d]) - 2) for d, p in enumerate(position)
        ]
        fraction = [p - lo for p, lo in zip(position, low, strict=True)]
        result = np.zeros((len(block), wavelength.size), dtype=np.float32)
        for corner in np.ndindex(2, 2, 2):
            weight = np.prod(
                [f if c else 1 - f for f, c in zip(fraction, corner, strict=True)], axis=0
            )
            result += (
                weight[:, None] * anchor[low[0] + corner[0], low[1] + corner[1], low[2] + corner[2]]
            )
        values[start : start + len(block)] = result
    return GridData(
        path="", format="bench", labels=("TEFF", "LOGG", "METALS"), llimits=np.array(LLIMITS),
        steps=np.array(STEPS), shape=shape,
        sections=(Section(0, wavelength.size, (APSTAR_CRVAL1, APSTAR_CDELT1), LOGW_LOG10),),
        values=values, vacuum=True,
    )  # fmt: skip


def measure(path: Path) -> dict:
    found = subprocess.run(
        [sys.executable, "-c", MEASURE, str(path)],
        capture_output=True, text=True, check=True, env={"OMP_NUM_THREADS": "1", "PATH": ""},
    )  # fmt: skip
    return json.loads(found.stdout)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--shape", default="41,33,21", help="nodes per label (default 41,33,21)")
    parser.add_argument("--directory", type=Path, help="where to write the grids (kept)")
    args = parser.parse_args()
    shape = tuple(int(n) for n in args.shape.split(","))

    with tempfile.TemporaryDirectory() as scratch:
        directory = args.directory or Path(scratch)
        directory.mkdir(parents=True, exist_ok=True)
        clock = time.perf_counter()
        grid = make_grid(shape)
        size, made = grid.values.nbytes / 1e9, time.perf_counter() - clock
        print(f"grid: {grid.n_nodes} nodes x {grid.npix} pixels, float32 {size:.2f} GB, "
              f"made in {made:.0f} s")  # fmt: skip
        files = {
            "FERRE ASCII": directory / "grid.dat",
            "FERRE binary": directory / "grid.hdr",
            "astra FITS": directory / "grid.fits",
        }
        written = {}
        for name, path in files.items():
            clock = time.perf_counter()
            fmt = {"FERRE ASCII": "ferre-ascii", "FERRE binary": "ferre-binary"}.get(name, "astra")
            paths = write_grid(grid, path, fmt)
            written[name] = (time.perf_counter() - clock, sum(p.stat().st_size for p in paths))
        del grid

        clock = time.perf_counter()
        converted = directory / "converted.hdr"
        subprocess.run(
            [sys.executable, "-m", "astra_cli", "grid", "convert", str(files["FERRE ASCII"]),
             str(converted)], check=True, capture_output=True,
        )  # fmt: skip
        convert_s = time.perf_counter() - clock

        print(f"{'format':14s} {'size GB':>8s} {'write s':>8s} {'import s':>9s} {'load s':>8s} "
              f"{'1st sweep s':>11s}  memory-mapped")  # fmt: skip
        for name, path in [*files.items(), ("converted .hdr", converted)]:
            figures = measure(path)
            write_s, size = written.get(name, (convert_s, sum(
                p.stat().st_size for p in (converted, converted.with_suffix(".unf")))))  # fmt: skip
            print(f"{name:14s} {size / 1e9:8.2f} {write_s:8.1f} {figures['import_s']:9.2f} "
                  f"{figures['load_s']:8.3f} {figures['first_sweep_s']:11.2f}  "
                  f"{'yes' if figures['mapped'] else 'no: read whole'}")  # fmt: skip
        print(f"astra grid convert ASCII -> binary: {convert_s:.1f} s")


if __name__ == "__main__":
    main()
