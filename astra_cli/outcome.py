"""The outcome of one run, as a worker reports it back to the invoking process."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any


@dataclass(slots=True)
class Outcome:
    """What happened to one observation: a result, or the error that stopped it."""

    observation: str
    result: dict[str, Any] | None
    error: str | None
    started_at: float
    duration_s: float

    @property
    def ok(self) -> bool:
        return self.error is None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> Outcome:
        return cls(**values)
