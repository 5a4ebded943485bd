"""Methods that feed each other: the runs of another method whose results a plan's runs need
(`Method.upstream`: grid, cannon need `v_rad` from `rv` for observed-frame spectra), planned as
plans of their own to run first, and their results looked up for the runs that need them.

A small, explicit mechanism rather than a workflow engine: one column of one other method per
need, looked up by observation in the store; what is missing is planned with the upstream
method's own groups and chunks, and run first in the same invocation.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

from astra_cli.engine.fingerprints import Fingerprints
from astra_cli.engine.planner import Group, Need, Plan, RunLookup, make_plan
from astra_cli.engine.requests import RequestSet
from astra_cli.io.store import ResultsStore
from astra_cli.methods.registry import load_method
from astra_cli.vocabulary import Observation


def upstream_plans(
    plan: Plan,
    lookup: RunLookup,
    *,
    fingerprints: Fingerprints | None = None,
    jobs: int,
    chunk_size: int | None,
    retry_failed: bool,
) -> list[Plan]:
    """One plan per upstream method and options, of the runs the plan's runs need; runs done
    already are left out as in any plan (`--force` does not reach upstream)."""
    wanted: dict[str, tuple[Need, dict[str, Observation]]] = {}
    for group in plan.groups:
        for need in group.needs:
            name = f"{need.method}:{json.dumps(dict(need.options), sort_keys=True)}"
            _, observations = wanted.setdefault(name, (need, {}))
            for observation in group.observations:
                if need.applies(observation):
                    bare = bare_observation(observation)
                    observations.setdefault(bare.key, bare)
    plans = []
    for need, observations in wanted.values():
        if not observations:
            continue
        plans.append(
            make_plan(
                load_method(need.method),
                [RequestSet(need.options, list(observations.values()))],
                lookup,
                fingerprints=fingerprints,
                jobs=jobs,
                chunk_size=chunk_size,
                retry_failed=retry_failed,
                output_dir=plan.output_dir,
            )
        )
    return plans


def bare_observation(observation: Observation) -> Observation:
    """The observation as other methods know it: without the inputs it brings."""
    return Observation(
        observation.bare_key, observation.path, observation.identifiers, (), observation.position
    )


def inputs_for(
    group: Group, observations: Sequence[Observation], store: ResultsStore
) -> dict[str, tuple[tuple[str, Any], ...] | str | None]:
    """For each observation: the inputs it brings, with the upstream columns it needs added;
    or why it cannot be run (the upstream run failed); or None when the upstream run has not
    been done (another invocation holds it, say), so the run waits for a later invocation."""
    found: dict[str, tuple[tuple[str, Any], ...] | str | None] = {
        observation.key: observation.inputs for observation in observations
    }
    for need in group.needs:
        applicable = [o for o in observations if need.applies(o)]
        if not applicable:
            continue
        columns = [need.column] if need.flags_column is None else [need.column, need.flags_column]
        stored = store.column_values(need.group_key, columns, [o.bare_key for o in applicable])
        for observation in applicable:
            inputs = found[observation.key]
            if not isinstance(inputs, tuple):
                continue
            status, values, error = stored.get(observation.bare_key, (None, (None, None), None))
            value, flags = values[0], values[1] if len(values) > 1 else None
            if status == "ok" and value is not None:
                added = [(need.column, value)]
                if flags:
                    added.append((f"{need.column}_flags", flags))
                found[observation.key] = (*inputs, *added)
            elif status == "ok":
                found[observation.key] = f"needs {need.column} from {need.method}, which has none"
            elif status == "failed":
                found[observation.key] = (
                    f"needs {need.column} from {need.method}, which failed: {error}"
                )
            else:
                found[observation.key] = None
    return found
