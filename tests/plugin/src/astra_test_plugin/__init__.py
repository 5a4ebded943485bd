"""A method plugin installed by the tests the way users install theirs (an entry point in the
`astra_cli.methods` group), so that they exercise discovery, worker processes and model caching
for real.

Observations whose file name contains `fail` raise in `analyse`; `crash` kills the worker
process with SIGKILL, as the OS does to a process that runs out of memory; `wait` waits for
the file `--gate` names to exist (a test holds a chunk half done).
"""

import mmap
import os
import signal
import time
import warnings
from pathlib import Path

from astra_cli import Method, Param
from astra_cli.errors import UsageError


class Counting(Method):
    """Counts its model loads: each load appends the worker's pid to --load-log."""

    a = Param(3, help="A significant option, as in the seed's example.")
    order = Param(5, help="Another significant option.")
    threads = Param(1, significant=False, help="An insignificant option.")
    load_log = Param("", significant=False, help="File that each model load appends a line to.")
    delay = Param(0.0, significant=False, help="Seconds to sleep per observation.")
    load_warning = Param("", significant=False, help="A warning each model load gives.")
    run_log = Param("", significant=False, help="File that each analysis appends a line to.")
    gate = Param("", significant=False, help="File an observation named `wait` waits for.")
    heap_log = Param(
        "",
        significant=False,
        help="File each analysis appends a line to: its pid, and how many MiB of the 48 it "
        "allocates and frees its process handed back to the kernel.",
    )

    def load_model(self):
        if self.load_log:
            with open(self.load_log, "a") as log:
                log.write(f"{os.getpid()} a={self.a} order={self.order}\n")
        if self.load_warning:
            warnings.warn(self.load_warning, UserWarning, stacklevel=1)
        return {"loaded_by": os.getpid()}

    def analyse(self, model, spectrum):
        name = os.path.basename(spectrum.path)
        if "crash" in name:
            os.kill(os.getpid(), signal.SIGKILL)
        if "fail" in name:
            raise ValueError(f"asked to fail on {name}")
        while "wait" in name and self.gate and not os.path.exists(self.gate):
            time.sleep(0.02)
        time.sleep(self.delay)
        if self.run_log:
            with open(self.run_log, "a") as log:
                log.write(f"a={self.a} order={self.order} {name}\n")
        if self.heap_log:
            with open(self.heap_log, "a") as log:
                log.write(f"{os.getpid()} {given_back()}\n")
        return {
            "n_pixels": int(spectrum.flux.size),
            "mean_flux": float(spectrum.flux.mean()),
            "a_times_order": self.a * self.order,
            "worker": model["loaded_by"],
        }


def resident() -> int:
    """This process's resident bytes, read from the kernel: what it holds, not what it has
    freed into its allocator."""
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def given_back() -> int:
    """How many MiB of a chunk's worth of arrays (6 blocks of 8 MiB, every page written), once
    freed, this process handed back to the kernel. 48 MiB fits in one heap of a thread's
    arena (64 MiB at most), which glibc unmaps once empty whatever it is told to keep."""
    blocks = [b"x" * (8 * 2**20) for _ in range(6)]
    held = resident()
    del blocks
    return (held - resident()) // 2**20


class TextModel(Method):
    """A model file whose text is the model: every result says which text it was made with.

    Its check (`validate`) refuses a model whose text starts with `refuse`; with --log, each
    model load appends `load PID` as it starts and `loaded PID` as it ends, each observation
    analysed `analysed PID`, and the check, given --check-waits-for N, waits (up to 30 s) for N
    loads to be logged before it appends `checked after N loads in PID`, so that a test can see
    whether the workers load the model while the request is checked, and where it was checked.
    Given --load-waits-for N, a load waits (up to 30 s) for N loads to be logged: a model that
    takes a while to load, for every worker to be up by the time one has loaded it. Given
    --second-load-waits-for-analysis, every load but the first logged waits (up to 30 s) for
    an observation to be analysed: a worker that loads slowly, for a test to see whether the
    others start without it.
    """

    model = Param(type=Path, help="A text file: the model is its text.")
    delay = Param(0.0, significant=False, help="Seconds to sleep per observation.")
    log = Param("", significant=False, help="File that loads, analyses and the check append to.")
    check_waits_for = Param(0, significant=False, help="Logged loads the check waits for.")
    load_waits_for = Param(0, significant=False, help="Logged loads a load waits for.")
    second_load_waits_for_analysis = Param(
        False, significant=False, help="A load after another waits for an analysis."
    )
    mapped = Param(
        "",
        significant=False,
        help="A file whose every page each observation reads through a memory map, as a fit "
        "reads a mapped grid; the map stays open, as a loaded grid's does.",
    )

    def validate(self):
        loads = self._wait_for_loads(self.check_waits_for)
        if self.log:
            with open(self.log, "a") as log:
                log.write(f"checked after {loads} loads in {os.getpid()}\n")
        if Path(self.model).read_text().startswith("refuse"):
            raise UsageError(f"{self.model}: this model is refused by its check")

    def load_model(self):
        self._log("load")
        self._wait_for_loads(self.load_waits_for)
        if self.second_load_waits_for_analysis and self._first_load() != f"load {os.getpid()}":
            self._wait_for_lines("analysed ", 1)
        self._log("loaded")
        return Path(self.model).read_text()

    def analyse(self, model, spectrum):
        time.sleep(self.delay)
        if self.mapped:
            _touch_every_page(self.mapped)
        self._log("analysed")
        return {"model_text": model}

    def _log(self, what):
        if self.log:
            with open(self.log, "a") as log:
                log.write(f"{what} {os.getpid()}\n")

    def _first_load(self):
        lines = Path(self.log).read_text().splitlines()
        return next(line for line in lines if line.startswith("load "))

    def _wait_for_loads(self, wanted):
        return self._wait_for_lines("load ", wanted)

    def _wait_for_lines(self, start, wanted):
        deadline = time.monotonic() + 30
        while True:
            lines = Path(self.log).read_text().splitlines() if os.path.exists(self.log) else []
            found = sum(line.startswith(start) for line in lines)
            if found >= wanted or time.monotonic() > deadline:
                return found
            time.sleep(0.02)


_maps = {}


def _touch_every_page(path):
    """Read a byte of every page of the file through a map kept open: the pages count in the
    process's resident memory, as a mapped grid's pages do once fits have read them."""
    if path not in _maps:
        with open(path, "rb") as handle:
            _maps[path] = mmap.mmap(handle.fileno(), 0, access=mmap.ACCESS_READ)
    pages = _maps[path]
    sum(pages[offset] for offset in range(0, len(pages), mmap.PAGESIZE))


class Vectorised(Method):
    """Analyses a whole chunk in one call; a spectrum named `fail` makes the batch raise, one
    named `crash` kills the worker."""

    batch_log = Param("", significant=False, help="File that each call appends its size to.")

    def analyse_batch(self, model, spectra):
        import numpy as np

        if any("crash" in os.path.basename(s.path) for s in spectra):
            os.kill(os.getpid(), signal.SIGKILL)
        if any("fail" in os.path.basename(s.path) for s in spectra):
            raise ValueError("a bad spectrum in the batch")
        if self.batch_log:
            with open(self.batch_log, "a") as log:
                log.write(f"{len(spectra)}\n")
        means = np.array([s.flux.mean() for s in spectra])
        return [{"mean_flux": mean} for mean in means]
