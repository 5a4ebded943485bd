"""What a store holds, method by method and group by group: the overview `astra status` gives
when it is not asked about particular runs.

Stale runs are counted as the planner would find them: each run's input and its group's model
files as they are now against the states the run recorded (`engine.fingerprints`).
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from typing import Any

from astra_cli.engine.fingerprints import Fingerprints
from astra_cli.engine.planner import CurrentState, RunPolicy, classify
from astra_cli.errors import AstraError
from astra_cli.io.store import DEFAULT_OUTPUT_DIR, ResultsStore
from astra_cli.methods.registry import load_method
from astra_cli.vocabulary import Observation, StoredRun


@dataclass
class GroupOverview:
    """One group of stored runs."""

    method: str
    key: str
    options: dict[str, Any]
    ok: int = 0
    failed: int = 0
    stale: int | None = 0
    """Runs whose input or model changed since; None when the method is not installed."""
    flagged: int = 0
    """ok runs whose flags are not 0."""
    last_run: float | None = None
    """When the latest run started (Unix time)."""
    _runs: list[tuple[str, StoredRun]] = field(default_factory=list, repr=False)

    def as_dict(self) -> dict[str, Any]:
        return {
            "method": self.method, "key": self.key, "options": self.options, "ok": self.ok,
            "failed": self.failed, "stale": self.stale, "flagged": self.flagged,
            "last_run": self.last_run,
        }  # fmt: skip


def store_overview(output_dir: str | os.PathLike[str] = DEFAULT_OUTPUT_DIR) -> list[GroupOverview]:
    """Every group of every method in the store, with its counts; the store is only read."""
    groups: dict[str, GroupOverview] = {}
    with ResultsStore(output_dir, read_only=True) as store:
        for row in store.overview_rows():
            method, key, options, status, path, input_state, model_state, flags, started = row
            group = groups.get(key)
            if group is None:
                group = groups[key] = GroupOverview(method, key, json.loads(options))
            if status == "ok":
                group.ok += 1
                group.flagged += int(bool(flags))
            else:
                group.failed += 1
            if started is not None:
                group.last_run = max(group.last_run or started, started)
            group._runs.append((path, StoredRun(status, input_state, model_state)))
        fingerprints = Fingerprints(store)
        for group in groups.values():
            group.stale = _stale(group, fingerprints)
    return list(groups.values())


def _stale(group: GroupOverview, fingerprints: Fingerprints) -> int | None:
    try:
        method_class = load_method(group.method)
        own = {k: v for k, v in group.options.items() if k in method_class.params}
        model = fingerprints.model(method_class(**own)).digest
    except AstraError:
        return None
    observations = [Observation(f"{index}", path) for index, (path, _) in enumerate(group._runs)]
    stored = {o.key: run for o, (_, run) in zip(observations, group._runs, strict=True)}
    current = CurrentState({o.key: fingerprints.input(o.path) for o in observations}, model)
    return classify(observations, stored, RunPolicy(), current).stale
