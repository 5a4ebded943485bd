"""Where the demo data set's test stars are, and what a run stored for them: shared by the tests
of the science methods."""

from __future__ import annotations

from astra_cli.demo.report import STAR_KEYS
from astra_cli.io.identifiers import IdentifierResolver
from astra_cli.io.store import ResultsStore


def star_paths(files) -> list[str]:
    """The apStar file of every test star, in the order of `files.stars`."""
    resolver = IdentifierResolver(files.data_root)
    return [resolver.resolve({key: row[key] for key in STAR_KEYS}).path for row in files.stars]


def stored_results(output_dir, method: str) -> dict[str, dict]:
    """input path -> result of every run of `method`, all of which must be ok."""
    with ResultsStore(output_dir) as store:
        records = list(store.records(method=method))
    assert all(record.status == "ok" for record in records), [r.error for r in records]
    return {record.input_path: record.result for record in records}
