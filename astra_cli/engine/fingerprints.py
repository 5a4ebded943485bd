"""What a run was computed from: the state of its input file and the contents of its group's
model files.

A stored run whose input or model changed since is stale and runs again, without --force. An
input is known by its size and modification time (one `stat`, cheap enough for every run of a
nightly request), or by its contents with `--checksum`; a model file always by its contents,
read once and remembered in the store by size and modification time. So a model retrained in
place reruns every run made with it, while one copied into place unchanged reruns nothing.

Workers compare the model files' size and modification time with those seen here, before and
after each chunk, so that one invocation never stores results of two versions of a model
under one digest (`engine.worker`).
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Iterable
from dataclasses import dataclass

from astra_cli.errors import UsageError
from astra_cli.io.store import ResultsStore
from astra_cli.methods.base import Method

MISSING = "missing"
"""The state of a file that is not there."""
CHECKSUM_PREFIX = "sha256:"
"""How an input state known by contents (`--checksum`) begins."""

_READ_BLOCK = 1 << 20


@dataclass(frozen=True)
class ModelFingerprint:
    """A group's model files: their contents' digest and what `stat` says of them."""

    digest: str
    """What the group's runs store as `model_state`; "" for a method without model files."""
    files_state: str
    """Size and modification time of each file, for the workers to compare with."""


NO_MODEL = ModelFingerprint("", "")


def files_state(paths: Iterable[str | os.PathLike[str]]) -> str:
    """`size-mtime_ns` of each file, comma-separated (`missing` for one that is not there)."""
    states = []
    for path in paths:
        try:
            states.append(_stat_state(os.stat(path)))
        except OSError:
            states.append(MISSING)
    return ",".join(states)


def _stat_state(status: os.stat_result) -> str:
    return f"{status.st_size}-{status.st_mtime_ns}"


def file_digest(path: str | os.PathLike[str]) -> str:
    """The SHA-256 of a file's contents, read a block at a time (what `sha256sum` prints)."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(_READ_BLOCK), b""):
            digest.update(block)
    return digest.hexdigest()


class Fingerprints:
    """The states of inputs and models for one invocation's plan, each computed once.

    store
        Where model digests are remembered between invocations (None: not yet; `remember`
        writes them once there is one).
    checksum
        Know inputs by their contents rather than size and modification time: slower (every
        input is read), but a file rewritten with the same bytes, or restored from a backup
        with new times, is not rerun. Runs stored the other way are not compared (nor rerun)
        until something else reruns them.
    """

    def __init__(self, store: ResultsStore | None = None, *, checksum: bool = False) -> None:
        self.store = store
        self.checksum = checksum
        self._inputs: dict[str, str] = {}
        self._models: dict[tuple[str, ...], ModelFingerprint] = {}
        self._unremembered: list[tuple[str, int, int, str]] = []

    def input(self, path: str) -> str:
        """`size:mtime_ns` of an input file (or `sha256:...` with checksum), `missing` if it
        is not there."""
        state = self._inputs.get(path)
        if state is None:
            state = self._inputs[path] = _input_state(path, self.checksum)
        return state

    def model(self, method: Method) -> ModelFingerprint:
        """The fingerprint of the method's model files (`Method.model_files`)."""
        paths = tuple(os.path.abspath(path) for path in method.model_files())
        if not paths:
            return NO_MODEL
        found = self._models.get(paths)
        if found is None:
            digests, states = zip(*(self._digest(path) for path in paths), strict=True)
            named = [f"{path}={digest}" for path, digest in zip(paths, digests, strict=True)]
            combined = hashlib.sha256("\n".join(named).encode()).hexdigest()[:16]
            # The workers check the files against the very stat the digest was taken with:
            # a file replaced since cannot pass for the one that was read.
            found = self._models[paths] = ModelFingerprint(combined, ",".join(states))
        return found

    def _digest(self, path: str) -> tuple[str, str]:
        """(SHA-256 of the file, `size-mtime_ns` of the file that was read)."""
        try:
            before = os.stat(path)
        except OSError:  # for `astra status`; analyse refuses a missing model before this
            return MISSING, MISSING
        state = _stat_state(before)
        if self.store is not None:
            known = self.store.model_digest(path, before.st_size, before.st_mtime_ns)
            if known is not None:
                return known, state
        digest = file_digest(path)
        after = os.stat(path)
        if (after.st_size, after.st_mtime_ns) != (before.st_size, before.st_mtime_ns):
            raise UsageError(f"model file {path} changed while astra read it; try again")
        if self.store is not None:
            self.store.remember_model_digest(path, after.st_size, after.st_mtime_ns, digest)
        else:
            self._unremembered.append((path, after.st_size, after.st_mtime_ns, digest))
        return digest, state

    def remember(self, store: ResultsStore) -> None:
        """Remember in `store`, from now on, and the digests taken before it was opened (a
        new store is created only once the request passed its checks)."""
        self.store = store
        for path, size, mtime_ns, digest in self._unremembered:
            store.remember_model_digest(path, size, mtime_ns, digest)
        self._unremembered.clear()


def _input_state(path: str, checksum: bool) -> str:
    try:
        status = os.stat(path)
    except OSError:
        return MISSING
    if checksum:
        try:
            return f"{CHECKSUM_PREFIX}{file_digest(path)}"
        except OSError:
            return MISSING
    return f"{status.st_size}:{status.st_mtime_ns}"
