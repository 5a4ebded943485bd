"""Run every method on the demo data set and compare what it recovers with the truth."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from astra_cli.demo.dataset import DemoFiles
from astra_cli.engine.progress import Progress
from astra_cli.io.identifiers import IdentifierResolver
from astra_cli.io.store import ResultsStore
from astra_cli.vocabulary import Summary

STAR_KEYS = ("release", "apred", "telescope", "field", "obj")
VISIT_KEYS = ("release", "apred", "telescope", "field", "plate", "mjd", "fiber")
TARGETS = {
    "grid": {"teff": 50.0, "logg": 0.1, "m_h": 0.05},
    "cannon": {"teff": 100.0, "logg": 0.2, "m_h": 0.1},
    "rv": {"v_rad": 0.5},
}
"""The accuracy each method must reach at S/N 100 (rms of recovered minus true)."""


@dataclass(frozen=True)
class Accuracy:
    method: str
    label: str
    n: int
    rms: float
    bias: float
    target: float | None

    @property
    def met(self) -> bool | None:
        return None if self.target is None else self.rms <= self.target


def analyse_demo(
    files: DemoFiles,
    output_dir: Path,
    *,
    jobs: int | None = None,
    progress_factory: Callable[[], Progress] | None = None,
) -> tuple[list[Summary], list[Accuracy]]:
    """Run snr, grid, cannon and rv on the demo files; return their summaries and accuracy."""
    from astra_cli.api import run

    stars = [{key: row[key] for key in STAR_KEYS} for row in files.stars]
    visits = [{key: row[key] for key in VISIT_KEYS} for row in files.visits]
    runs: list[tuple[str, list[dict[str, str]], dict[str, Any]]] = [
        ("snr", stars, {}),
        ("grid", stars, {"grid": files.grid_fits}),
        ("cannon", stars, {"model": files.cannon_model}),
        ("rv", visits, {"templates": files.templates}),
    ]
    summaries = []
    for method, observations, options in runs:
        progress: Progress | None = progress_factory() if progress_factory else None
        summaries.append(
            run(method, observations, output_dir=output_dir, data_root=files.data_root,
                jobs=jobs, progress=progress, **options)
        )  # fmt: skip
    return summaries, accuracy(files, output_dir)


def accuracy(files: DemoFiles, output_dir: Path) -> list[Accuracy]:
    """rms and bias of recovered minus true labels, per method and label."""
    resolver = IdentifierResolver(files.data_root)
    path_of_star = [resolver.resolve({k: r[k] for k in STAR_KEYS}).path for r in files.stars]
    path_of_visit = [resolver.resolve({k: r[k] for k in VISIT_KEYS}).path for r in files.visits]
    rows = []
    with ResultsStore(output_dir) as store:
        for method, targets in TARGETS.items():
            found = {
                r.input_path: r.result or {} for r in store.records(method=method, status="ok")
            }
            truth_rows, paths = (
                (files.visits, path_of_visit) if method == "rv" else (files.stars, path_of_star)
            )
            for label, target in targets.items():
                pairs = [
                    (found[path][label], float(truth[label]))
                    for truth, path in zip(truth_rows, paths, strict=True)
                    if path in found and found[path].get(label) is not None
                ]
                if not pairs:
                    continue
                difference = np.array([got - true for got, true in pairs])
                rows.append(
                    Accuracy(method, label, len(pairs), float(np.sqrt(np.mean(difference**2))),
                             float(np.mean(difference)), target)
                )  # fmt: skip
    return rows
