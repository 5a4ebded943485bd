"""`astra grid info FILE` and `astra grid convert IN... OUT`: what astra makes of a model grid,
and copies of it in another format (a binary copy of an ASCII grid loads in milliseconds and is
shared by every worker of a machine)."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, Literal

import typer

from astra_cli.cli.console import print_json, stderr_console, stdout_console
from astra_cli.cli.errors import reported_errors
from astra_cli.cli.helptext import Command, Group, help_of
from astra_cli.cli.options import Json, Verbose

if TYPE_CHECKING:
    from astra_cli.io.grids import GridData

grid_app = typer.Typer(
    cls=Group,
    help="Inspect model grids and convert them between astra's and FERRE's formats.",
    no_args_is_help=True,
)

GridFormat = Literal["astra", "ferre-binary", "ferre-ascii", "npz"]


def info_command(
    path: Annotated[Path, typer.Argument(help="The grid file.", metavar="FILE")],
    json: Json = False,
    verbose: Verbose = False,
) -> None:
    """Describe a model grid: its labels and nodes, wavelength sections, pixels, size, and what
    astra will do with it.

    Reads the header and checks that the data hold what it promises; does not load the grid.
    """
    from astra_cli.io.grids import check_grid, grid_format

    with reported_errors(verbose, json_document=json):
        grid = check_grid(path)
        described = describe(grid, grid_format(path))
    if json:
        print_json(described)
        return
    _render(described)


def describe(grid: GridData, fmt: str) -> dict[str, Any]:
    """What `astra grid info` says, as a document."""
    from astra_cli.io.formats import binary_data_path
    from astra_cli.io.grids import FORMATS

    files = [Path(grid.path)] + ([binary_data_path(grid.path)] if fmt == "ferre-binary" else [])
    stored = grid.pca.n_components * len(grid.pca.piece_pixels) if grid.pca else grid.npix
    mapped = fmt in ("astra", "ferre-binary")
    return {
        "path": grid.path,
        "format": fmt,
        "format_description": FORMATS[fmt],
        "bytes": sum(file.stat().st_size for file in files),
        "labels": [
            {
                "name": label,
                "column": column,
                "first": float(grid.llimits[d]),
                "last": float(grid.upper[d]),
                "step": float(grid.steps[d]),
                "nodes": grid.shape[d],
            }
            for d, (label, column) in enumerate(zip(grid.labels, grid.columns, strict=True))
        ],
        "nodes": grid.n_nodes,
        "pixels": grid.npix,
        "sections": [
            {
                "pixels": section.npix,
                "from_angstrom": float(section.wavelength()[0]),
                "to_angstrom": float(section.wavelength()[-1]),
                "logw": section.logw,
                "resolution": section.resolution,
            }
            for section in grid.sections
        ],
        "vacuum": grid.vacuum,
        "pca": None
        if grid.pca is None
        else {"pieces": list(grid.pca.piece_pixels), "components": grid.pca.n_components},
        "values_per_node": stored,
        "memory_mapped": mapped,
        "loading": (
            "memory-mapped: read as needed, shared by every worker on the machine"
            if mapped
            else "read whole by every worker that loads it: "
            f"`astra grid convert {grid.path} COPY.hdr` makes a copy that maps"
        ),
        "metadata": {key: value for key, value in grid.metadata.items() if value not in ("", None)},
    }


def _render(described: dict[str, Any]) -> None:
    from rich.table import Table

    console = stdout_console()
    megabytes = described["bytes"] / 1e6
    console.print(
        f"{described['path']}: {described['format_description']}, {megabytes:.1f} MB",
        markup=False,
    )
    labels = Table("label", "result column", "first", "last", "step", "nodes", title_justify="left")
    labels.title = f"{described['nodes']} nodes"
    for label in described["labels"]:
        labels.add_row(
            label["name"], label["column"], f"{label['first']:g}", f"{label['last']:g}",
            f"{label['step']:g}", str(label["nodes"]),
        )  # fmt: skip
    console.print(labels)
    sections = Table("section", "pixels", "from (A)", "to (A)", "LOGW", "R", title_justify="left")
    vacuum = {True: "vacuum", False: "air", None: "air (VACUUM not stated)"}[described["vacuum"]]
    sections.title = f"{described['pixels']} pixels, {vacuum} wavelengths"
    for index, section in enumerate(described["sections"], 1):
        resolution = section["resolution"]
        sections.add_row(
            str(index), str(section["pixels"]), f"{section['from_angstrom']:.3f}",
            f"{section['to_angstrom']:.3f}", str(section["logw"]),
            "" if resolution is None else f"{resolution:g}",
        )  # fmt: skip
    console.print(sections)
    pca = described["pca"]
    if pca:
        console.print(
            f"PCA-compressed: {len(pca['pieces'])} piece(s) of {pca['components']} components, "
            "expanded as needed",
            markup=False,
        )
    console.print(f"loading: {described['loading']}", markup=False)
    if described["vacuum"] is not True:
        console.print(
            "fitting: apStar and apVisit spectra are in vacuum; `astra analyse grid` refuses "
            "this grid unless given --air-to-vacuum",
            markup=False,
        )


def convert_command(
    paths: Annotated[
        list[Path],
        typer.Argument(
            help="The grid to convert, then the file to write. Several grids of one lattice "
            "before the output are combined, their pixels one after the other, as FERRE "
            "combines SYNTHFILE(1), SYNTHFILE(2), ...",
            metavar="IN... OUT",
        ),
    ],
    output_format: Annotated[
        GridFormat | None,
        typer.Option(
            "--format",
            metavar="FORMAT",
            show_default=False,
            help="Format to write: astra (FITS), ferre-binary (.hdr + .unf), ferre-ascii, npz. "
            "Default: from OUT's name (.fits, .hdr, .dat, .npz).",
        ),
    ] = None,
    overwrite: Annotated[
        bool, typer.Option("--overwrite", metavar="", help="Replace OUT if it exists.")
    ] = False,
    verbose: Verbose = False,
) -> None:
    """Convert a model grid between astra FITS, FERRE binary, FERRE ASCII and .npz.

    FERRE binary and astra FITS grids are memory-mapped: load them once per machine, not once
    per worker. Labels, nodes, sections, VACUUM and the header's ID are kept; values are
    float32, and ASCII is written with 9 digits, so every value reads back exactly.
    """
    from astra_cli.errors import UsageError
    from astra_cli.io.grids import combine, format_by_name, read_grid, write_grid

    with reported_errors(verbose):
        if len(paths) < 2:
            raise UsageError("give the grid to convert and the file to write: IN... OUT")
        *sources, output = paths
        fmt = output_format or format_by_name(output)
        if fmt is None:
            raise UsageError(
                f"{output}: cannot tell the format from its name (.fits, .hdr, .dat, .npz); "
                "give --format"
            )
        if output.exists() and not overwrite:
            raise UsageError(f"{output} exists: give --overwrite to replace it")
        if any(source.resolve() == output.resolve() for source in sources):
            raise UsageError(f"{output} is also an input: write the copy elsewhere")
        grids = [read_grid(source) for source in sources]
        grid = grids[0] if len(grids) == 1 else combine(grids)
        written = write_grid(grid, output, fmt)
    stderr_console().print(
        f"wrote {grid.n_nodes} nodes x {grid.npix} pixels ({fmt}): "
        + ", ".join(str(path) for path in written),
        markup=False,
    )


# Registered here, not by decorators, so that their help is unwrapped as every command's.
grid_app.command("info", cls=Command, help=help_of(info_command))(info_command)
grid_app.command("convert", cls=Command, help=help_of(convert_command))(convert_command)
