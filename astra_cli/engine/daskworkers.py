"""What the dask workers astra starts (a local cluster's, SLURM jobs') do as they start.

Imported only with a dask backend: it needs dask.distributed.
"""

from __future__ import annotations

from typing import Any

from distributed import WorkerPlugin

from astra_cli.engine.worker import keep_freed_heap


class KeepFreedHeap(WorkerPlugin):
    """Each worker keeps the memory one task freed for the next (`worker.keep_freed_heap`), as
    loky's workers do. A dask worker analyses in a thread of its own, whose memory glibc hands
    back even sooner than the main thread's: 2,000 demo stars on a local cluster of 2 workers
    made 2,000 huge-page faults and took 13.4 to 14.4 s (3 runs); with this plugin, 290 to 390
    and 9.9 to 10.1 s (2 runs). Unlike loky's, these workers pay for it in memory: the run's
    peak summed PSS (bench_grid_memory.py) was 814 and 838 MB, 984 and 999 MB with the plugin
    (the same with 64 MiB kept, so it is the blocks a thread's arena now holds, not the
    threshold); with the 0.97 GB grid and 20 spectra, 501 MB without the plugin, 517 MB
    with it."""

    name = "astra-keep-freed-heap"

    def setup(self, worker: Any) -> None:
        keep_freed_heap()


def keep_heaps(client: Any) -> None:
    """Have every worker of the client's cluster, present and to come, keep its heap. Not for
    a cluster the user started (--scheduler): its workers are theirs, and README says how to
    start them so that they keep theirs (bench_dask_heap.py measures the difference)."""
    client.register_plugin(KeepFreedHeap(), name=KeepFreedHeap.name)
