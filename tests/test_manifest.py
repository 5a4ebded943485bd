"""`--from-file` manifests as users write them: every format on the same observations, allStar
tables, bad rows named by file and line, manifests mixed with the other inputs, and the
`find | astra analyse snr --from-file -` pipe in a real shell."""

from __future__ import annotations

import csv
import gzip
import io
import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from astropy.io import fits
from astropy.table import MaskedColumn, Table
from conftest import ROOT
from fits_factory import write_apstar, write_apstars
from typer.testing import CliRunner

from astra_cli import api
from astra_cli.cli.app import app
from astra_cli.io.identifiers import IdentifierResolver
from astra_cli.io.store import ResultsStore

runner = CliRunner()

COLUMNS = ("release", "apred", "telescope", "field", "obj", "plate", "mjd", "fiber", "order")
ROWS = [
    # Two values of a significant option for one star, an empty cell (the default, 5), another
    # release, and an apVisit (plate, mjd and fiber make one) in the same file.
    ("dr17", "dr17", "apo25m", "218-04", "2M06440890-0610126", None, None, None, 5),
    ("dr17", "dr17", "apo25m", "218-04", "2M06440890-0610126", None, None, None, 10),
    ("dr17", "dr17", "lco25m", "000+14", "2M16505794-2118004", None, None, None, None),
    ("dr16", "r12", "apo25m", "120+12", "2M00000000+0000000", None, None, None, 5),
    ("dr17", "dr17", "apo25m", "120+12", None, "5095", 55844, 128, 10),
]


def invoke(*args, input: str | None = None):
    return runner.invoke(app, [str(arg) for arg in args], input=input)


def stored(output_dir, status=None):
    with ResultsStore(output_dir) as store:
        return list(store.records(status=status))


def row_dicts() -> list[dict]:
    return [{k: v for k, v in zip(COLUMNS, row, strict=True) if v is not None} for row in ROWS]


def write_delimited(path, delimiter: str) -> None:
    with open(path, "w", newline="") as out:
        writer = csv.writer(out, delimiter=delimiter)
        writer.writerow(COLUMNS)
        writer.writerow([])  # blank lines and comments are skipped
        writer.writerow(["# a comment"])
        writer.writerows([["" if v is None else v for v in row] for row in ROWS])


def write_text(path) -> None:
    lines = [",".join(f"{k}={v}" for k, v in row.items()) for row in row_dicts()]
    path.write_text("# tonight's list\n\n" + "\n".join(lines) + "\n")


def astropy_table() -> Table:
    table = Table()
    for index, name in enumerate(COLUMNS):
        values = [row[index] for row in ROWS]
        filler = 0 if name in ("mjd", "fiber", "order") else ""
        table[name] = MaskedColumn(
            [filler if v is None else v for v in values], mask=[v is None for v in values]
        )
    return table


def write_manifest(directory, fmt: str):
    """The ROWS in one format; returns (--from-file value, extra arguments, stdin)."""
    if fmt == "stdin":
        path = directory / "rows.csv"
        write_delimited(path, ",")
        return "-", ["--format", "csv"], path.read_text()
    path = directory / f"rows.{fmt}"
    if fmt in ("txt", "lst"):
        write_text(path)
    elif fmt in ("csv", "tsv"):
        write_delimited(path, "," if fmt == "csv" else "\t")
    elif fmt == "jsonl":
        path.write_text("\n".join(json.dumps(row) for row in row_dicts()) + "\n")
    else:
        astropy_table().write(path, format="fits" if "fit" in fmt else "ascii.ecsv")
    return path, [], None


TSV_HEADER = "\t".join(COLUMNS[:5]) + "\n"
FORMATS = ["txt", "lst", "csv", "tsv", "ecsv", "fits", "fit", "fits.gz", "jsonl", "stdin"]


def expected_plan(data_root) -> dict[str, list[str]]:
    """{significant options: observation keys}, resolved one by one without any manifest."""
    resolver = IdentifierResolver(data_root)
    groups: dict[str, list[str]] = {}
    for row in row_dicts():
        order = row.pop("order", 5)
        key = resolver.resolve(row).key
        groups.setdefault(json.dumps({"a": 3, "order": order}), []).append(key)
    return {options: sorted(keys) for options, keys in groups.items()}


@pytest.mark.parametrize("fmt", FORMATS)
def test_every_format_yields_the_same_plan(with_plugin, tmp_path, fmt):
    source, extra, stdin = write_manifest(tmp_path, fmt)
    root = tmp_path / "sas"

    result = invoke(
        "plan", "counting", "--from-file", source, *extra, "--data-root", root,
        "-o", tmp_path / "out", "--json", input=stdin,
    )  # fmt: skip

    assert result.exit_code == 0, result.output
    plan = json.loads(result.stdout)
    requested = {json.dumps(g["options"]): g["requested"] for g in plan["groups"]}
    assert requested == {json.dumps({"a": 3, "order": 5}): 3, json.dumps({"a": 3, "order": 10}): 2}
    assert plan["bad_rows"] == 0

    inputs = api.collect_inputs(
        "counting",
        from_file=[str(source)],
        data_root=root,
        file_format=extra[1] if extra else None,
        stdin=None if stdin is None else io.BytesIO(stdin.encode()),
    )
    plan = api.prepare(
        "counting", inputs.observations, {}, manifests=inputs.manifests, output_dir=tmp_path / "api"
    )
    found = {
        json.dumps(group.significant): sorted(o.key for o in group.observations)
        for group in plan.groups
    }
    assert found == expected_plan(root)


def test_allstar_columns_map_to_identifier_keys(tmp_path):
    root = tmp_path / "sas"
    resolver = IdentifierResolver(root)
    stars = ["2M06440890-0610126", "2M16505794-2118004"]
    for obj in stars:
        identifier = {"release": "dr17", "apred": "dr17", "telescope": "apo25m", "field": "218-04"}
        write_apstar(resolver.resolve({**identifier, "obj": obj}).path, obj=obj)
    allstar = Table(
        {"APOGEE_ID": stars, "TELESCOPE": ["apo25m"] * 2, "FIELD": ["218-04"] * 2,
         "SNR": [120.0, 80.0], "J": [9.1, 10.2]}
    )  # fmt: skip
    allstar.write(tmp_path / "allStar-dr17.fits")

    result = invoke(
        "analyse", "snr", "--from-file", tmp_path / "allStar-dr17.fits", "--release", "dr17",
        "--apred", "dr17", "--data-root", root, "-o", tmp_path / "out", "-j", "1",
    )  # fmt: skip

    assert result.exit_code == 0, result.output
    assert result.stderr.count("ignoring column(s) SNR, J") == 1
    records = stored(tmp_path / "out", "ok")
    assert sorted(r.identifiers["obj"] for r in records) == stars
    assert {r.identifiers["release"] for r in records} == {"dr17"}


def test_fits_hdu_by_name(tmp_path):
    first = Table({"path": ["/data/a.fits"]})
    second = Table({"path": ["/data/b.fits", "/data/c.fits"]})
    hdus = [fits.PrimaryHDU(), fits.table_to_hdu(first), fits.table_to_hdu(second)]
    hdus[2].name = "TARGETS"
    fits.HDUList(hdus).writeto(tmp_path / "lists.fits")

    default = invoke(
        "plan", "snr", "--from-file", tmp_path / "lists.fits", "-o", tmp_path, "--json"
    )
    named = invoke(
        "plan", "snr", "--from-file", tmp_path / "lists.fits", "--hdu", "TARGETS",
        "-o", tmp_path, "--json",
    )  # fmt: skip

    assert json.loads(default.stdout)["requested"] == 1
    assert json.loads(named.stdout)["requested"] == 2


def test_a_path_column_names_files_and_identifier_columns_beside_it_are_unused(
    real_apvisits, tmp_path
):
    manifest = tmp_path / "done.csv"
    manifest.write_text("path,obj,comment\n" + "".join(f"{p},2M1,x\n" for p in real_apvisits))

    result = invoke("analyse", "snr", "--from-file", manifest, "-o", tmp_path / "out", "-j", "1")

    assert result.exit_code == 0, result.output
    assert "ignoring column(s) comment" in result.stderr
    assert "ignoring column(s) obj (the path column names the files)" in result.stderr
    assert sorted(r.input_path for r in stored(tmp_path / "out")) == [str(p) for p in real_apvisits]


def test_manifests_combine_with_paths_obs_and_per_key_options_and_duplicates_run_once(
    real_apvisits, tmp_path
):
    root = tmp_path / "sas"
    identifier = {"release": "dr16", "apred": "r12", "telescope": "apo25m", "field": "120+12",
                  "plate": "5095", "mjd": "55844", "fiber": "128"}  # fmt: skip
    visit_path = IdentifierResolver(root).resolve(identifier).path
    Path(visit_path).parent.mkdir(parents=True)
    shutil.copy(real_apvisits[0], visit_path)
    obs = ",".join(f"{k}={v}" for k, v in identifier.items())
    (tmp_path / "list.txt").write_text(f"{real_apvisits[0]}\n{real_apvisits[1]}\n{obs}\n")
    (tmp_path / "more.csv").write_text(f"path\n{real_apvisits[1]}\n")

    result = invoke(
        "analyse", "snr", real_apvisits[0], "--obs", obs,
        "--release", "dr16", "--apred", "r12", "--telescope", "apo25m", "--field", "120+12",
        "--plate", "5095", "--plate", "5095", "--mjd", "55844", "--fiber", "128", "--fiber", "128",
        "--from-file", tmp_path / "list.txt", "--from-file", tmp_path / "more.csv",
        "--data-root", root, "-o", tmp_path / "out", "-j", "1", "--json",
    )  # fmt: skip

    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout)
    assert (summary["requested"], summary["ran"], summary["ok"]) == (3, 3, 3)
    assert len(stored(tmp_path / "out")) == 3


def test_three_bad_rows_among_ten_thousand_are_named_and_skip_bad_rows_runs_the_rest(tmp_path):
    lines = ["release,apred,telescope,field,obj"]
    lines += [f"dr17,dr17,apo25m,218-04,2M{i:08d}+0000000" for i in range(10_000)]
    lines[101] = "dr17,dr17,apo25m,218-04,"  # line 102: no obj
    lines[5001] = "dr17,dr17,apo25m,218/04,2M1"  # line 5002: a slash would leave the data root
    lines[9001] = "dr17,dr17,apo25m"  # line 9002: fields missing
    manifest = tmp_path / "targets.csv"
    manifest.write_text("\n".join(lines) + "\n")
    args = ("analyse", "snr", "--from-file", manifest, "--data-root", tmp_path / "sas",
            "-o", tmp_path / "out", "-j", "1")  # fmt: skip

    refused = invoke(*args)

    assert refused.exit_code == 2
    assert "3 bad row(s)" in refused.stderr
    assert f"{manifest}:102: apStar identifier is missing obj" in refused.stderr
    assert f"{manifest}:5002: field='218/04'" in refused.stderr
    assert f"{manifest}:9002: 3 field(s) where the header has 5" in refused.stderr
    assert "Traceback" not in refused.output
    assert not (tmp_path / "out").exists(), "nothing may be created for bad input"

    skipped = invoke(*args, "--skip-bad-rows", "--json")

    assert skipped.exit_code == 1
    summary = json.loads(skipped.stdout)
    assert (summary["requested"], summary["ran"], summary["bad_rows"]) == (9_997, 9_997, 3)
    assert f"{manifest}:5002:" in skipped.stderr
    records = stored(tmp_path / "out")
    assert len(records) == 9_997
    # Valid identifiers whose files are not on disk are failed runs, not a crash.
    assert records[0].error == f"missing input: {records[0].input_path}"


def test_more_than_twenty_bad_rows_are_counted(tmp_path):
    manifest = tmp_path / "bad.txt"
    manifest.write_text("release=dr17,obj\n" * 25)

    result = invoke("plan", "snr", "--from-file", manifest, "-o", tmp_path / "out")

    assert result.exit_code == 2
    assert f"{manifest}:20: expected key=value pairs" in result.stderr
    assert f"{manifest}:21:" not in result.stderr
    assert "... and 5 more bad row(s)" in result.stderr


@pytest.mark.parametrize(
    ("name", "content", "expected"),
    [
        ("a.txt", "release=dr17,,apred\n", "a.txt:1: expected key=value pairs"),
        ("a.txt", "\n# c\nrelease=dr17,obj=2M1,order=x\n", "a.txt:3: option --order: 'x'"),
        ("a.txt", "release=dr17,obj=2M1,ordr=5\n", "a.txt:1: 'ordr' (did you mean 'order'?)"),
        ("a.jsonl", '{"path": "a.fits"}\n{"path": \n', "a.jsonl:2: not valid JSON"),
        ("a.jsonl", '["a.fits"]\n', "a.jsonl:1: not a JSON object"),
        ("a.csv", 'path\n"a.fits\n', "a.csv:2: not valid CSV: unexpected end of data"),
        ("a.csv", "path,x\na.fits,1\nb.fits\n", "a.csv:3: 1 field(s) where the header has 2"),
        ("a.tsv", TSV_HEADER + "dr17\tdr17\tapo25m\t../x\t2M1\n", "a.tsv:2: field='../x'"),
        ("a.csv", "release,obj,order\ndr17,2M1,5.5\n", "a.csv:2: option --order: '5.5'"),
    ],
)
def test_bad_rows_say_file_line_and_what(with_plugin, tmp_path, name, content, expected):
    (tmp_path / name).write_text(content)

    result = invoke("plan", "counting", "--from-file", tmp_path / name, "-o", tmp_path / "out")

    assert result.exit_code == 2, result.output
    assert f"{tmp_path / expected}" in " ".join(result.stderr.split()), result.stderr


@pytest.mark.parametrize(
    ("name", "content", "args", "expected"),
    [
        ("a.dat", "x.fits\n", [], "cannot tell its format from its name; give --format"),
        ("a.csv", "obj,OBJ\n1,2\n", [], "columns 'obj' and 'OBJ' both give obj"),
        ("a.csv", "ra,dec\n1,2\n", [], "no column names an observation"),
        ("a.csv", "path\nx.fits\n", ["--kind", "apstarr"], "did you mean 'apStar'?"),
        ("a.fits", "not fits", [], "cannot read as a FITS table"),
        ("a.csv", "path,threads\nx.fits,1\ny.fits,2\n", [], "--threads does not change results"),
    ],
)
def test_bad_files_are_refused_before_any_work(
    with_plugin, tmp_path, name, content, args, expected
):
    (tmp_path / name).write_text(content)

    result = invoke(
        "analyse", "counting", "--from-file", tmp_path / name, *args, "-o", tmp_path / "out"
    )

    assert result.exit_code == 2
    assert expected in " ".join(result.stderr.split()), result.stderr
    assert not (tmp_path / "out").exists()


def test_missing_manifest_and_stdin_twice_are_refused(tmp_path):
    missing = invoke("plan", "snr", "--from-file", tmp_path / "nowhere.csv", "-o", tmp_path)
    twice = invoke("plan", "snr", "--from-file", "-", "--from-file", "-", "-o", tmp_path, input="")

    assert missing.exit_code == 2 and "No such file or directory" in missing.stderr
    assert twice.exit_code == 2 and "only once" in twice.stderr


def test_explicit_kind_names_the_product(tmp_path):
    manifest = tmp_path / "visits.csv"
    manifest.write_text("release,apred,telescope,field,plate,mjd\ndr17,dr17,apo25m,1,2,3\n")

    result = invoke("plan", "snr", "--from-file", manifest, "--kind", "apVisit", "-o", tmp_path)

    assert result.exit_code == 2
    assert f"{manifest}:2: apVisit identifier is missing fiber" in result.stderr


def test_an_empty_manifest_names_no_observation(tmp_path):
    result = invoke("plan", "snr", "--from-file", "-", "-o", tmp_path / "out", input="")

    assert result.exit_code == 2
    assert "no observations given" in result.stderr


def test_find_piped_into_analyse(tmp_path):
    data = tmp_path / "data"
    write_apstars(data / "a", 2)
    write_apstars(data / "b", 1)
    (data / "apVisit-elsewhere.fits").write_bytes(b"")
    command = (
        f"find {data} -name 'apStar-*.fits' | {sys.executable} -m astra_cli analyse snr "
        f"--from-file - -o {tmp_path / 'out'} -j 1"
    )

    result = subprocess.run(
        command, shell=True, capture_output=True, text=True, cwd=ROOT, check=False
    )

    assert result.returncode == 0, result.stderr
    records = stored(tmp_path / "out", "ok")
    assert len(records) == 3
    assert all("/apStar-test-" in r.input_path for r in records)


def test_gzipped_fits_is_read(tmp_path):
    """`.fits.gz` as the pipeline ships allStar files."""
    buffer = tmp_path / "list.fits"
    Table({"path": ["/data/a.fits"]}).write(buffer)
    with open(buffer, "rb") as raw, gzip.open(tmp_path / "list.fits.gz", "wb") as packed:
        packed.write(raw.read())

    result = invoke(
        "plan", "snr", "--from-file", tmp_path / "list.fits.gz", "-o", tmp_path, "--json"
    )

    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["requested"] == 1


def test_a_list_of_paths_never_asks_sdss_access_for_identifier_keys(real_apvisits, tmp_path):
    # Looking the keys up builds one sdss-access Path per release, most of a second of every
    # rerun; a list of paths has no column that needs them.
    from astra_cli.io.identifiers import _keys_of_products

    manifest = tmp_path / "paths.txt"
    manifest.write_text("".join(f"{p}\n" for p in real_apvisits))
    _keys_of_products.cache_clear()

    inputs = api.collect_inputs("snr", from_file=[str(manifest)])

    assert sum(len(named) for named in inputs.manifests.by_options.values()) == len(real_apvisits)
    assert _keys_of_products.cache_info().misses == 0
