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

A store being created has no run to compare a digest with: there, the model files are read in
the background (`Fingerprints.model`) while the plan is made and the workers start, and the
digest is waited for only where it is stored. A several-GB grid takes seconds to read.
"""

from __future__ import annotations

import hashlib
import os
import threading
from collections.abc import Callable, Iterable
from concurrent.futures import Future
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

    taken: str | Future[str]
    """The digest, or its reading still under way (`Fingerprints.model`)."""
    files_state: str
    """Size and modification time of each file, for the workers to compare with."""

    @property
    def digest(self) -> str:
        """What the group's runs store as `model_state` ("" for a method without model
        files), once read. Raises UsageError for a file that changed while it was read."""
        return self.taken if isinstance(self.taken, str) else self.taken.result()


NO_MODEL = ModelFingerprint("", "")


def files_state(paths: Iterable[str | os.PathLike[str]]) -> str:
    """`size-mtime_ns` of each file, comma-separated (`missing` for one that is not there)."""
    return _joined_state([_file_stat(path) for path in paths])


def _joined_state(stats: Iterable[tuple[int, int] | None]) -> str:
    return ",".join(MISSING if stat is None else f"{stat[0]}-{stat[1]}" for stat in stats)


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
        """The fingerprint of the method's model files (`Method.model_files`). Without a
        store yet, their digest is read in the background: nothing stored is compared with
        it, and the workers need only the files' state, taken here."""
        paths = tuple(os.path.abspath(path) for path in method.model_files())
        if not paths:
            return NO_MODEL
        found = self._models.get(paths)
        if found is None:
            # The workers check the files against the very stat the digest was taken with:
            # a file replaced since cannot pass for the one that was read.
            stats = tuple(_file_stat(path) for path in paths)
            if self.store is None:
                taken: str | Future[str] = _in_background(self._combined, paths, stats)
            else:
                taken = self._combined(paths, stats)
            found = self._models[paths] = ModelFingerprint(taken, _joined_state(stats))
        return found

    def _combined(self, paths: tuple[str, ...], stats: tuple[tuple[int, int] | None, ...]) -> str:
        """One digest for the files, each read with this state."""
        digests = [self._digest(path, stat) for path, stat in zip(paths, stats, strict=True)]
        named = [f"{path}={digest}" for path, digest in zip(paths, digests, strict=True)]
        return hashlib.sha256("\n".join(named).encode()).hexdigest()[:16]

    def _digest(self, path: str, state: tuple[int, int] | None) -> str:
        """The SHA-256 of a file whose size and modification time were `state`: remembered,
        or read."""
        if state is None:  # for `astra status`; analyse refuses a missing model before this
            return MISSING
        size, mtime_ns = state
        if self.store is not None:
            known = self.store.model_digest(path, size, mtime_ns)
            if known is not None:
                return known
        digest = file_digest(path)
        if _file_stat(path) != state:
            raise UsageError(f"model file {path} changed while astra read it; try again")
        if self.store is not None:
            self.store.remember_model_digest(path, size, mtime_ns, digest)
        else:
            self._unremembered.append((path, size, mtime_ns, digest))
        return digest

    def wait(self) -> None:
        """Wait for the digests read in the background. Raises UsageError for a model file
        that changed while it was read."""
        for fingerprint in self._models.values():
            fingerprint.digest  # noqa: B018

    def remember(self, store: ResultsStore) -> None:
        """Remember in `store`, from now on, and the digests taken before it was opened (a
        new store is created only once the request passed its checks), once read."""
        self.wait()  # a digest read in the background is in _unremembered once read
        self.store = store
        for path, size, mtime_ns, digest in self._unremembered:
            store.remember_model_digest(path, size, mtime_ns, digest)
        self._unremembered.clear()


def _file_stat(path: str | os.PathLike[str]) -> tuple[int, int] | None:
    """(size, modification time in ns) of a file; None if it is not there."""
    try:
        status = os.stat(path)
    except OSError:
        return None
    return status.st_size, status.st_mtime_ns


def _in_background(function: Callable[..., str], *args: object) -> Future[str]:
    """function(*args), run in a thread of its own: file reads and SHA-256 release the GIL, so
    the invoking process plans and starts its workers meanwhile. A daemon thread, unlike a
    ThreadPoolExecutor's, which the interpreter waits for as it exits: an interrupt does not
    wait for a several-GB read to end."""
    future: Future[str] = Future()

    def run() -> None:
        try:
            future.set_result(function(*args))
        except BaseException as error:
            future.set_exception(error)

    threading.Thread(target=run, name="astra-model-digest", daemon=True).start()
    return future


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
