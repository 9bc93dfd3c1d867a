"""The local Dask cluster of a run without ``--scheduler``: its worker settings and fork server."""

from __future__ import annotations

import logging
import multiprocessing
import signal
from typing import Any

__all__ = ["LOCAL_WORKER_CONFIG", "WORKER_PRELOAD", "local_cluster"]

#: Dask settings of the local cluster's worker processes. Dask sets ``MALLOC_TRIM_THRESHOLD_``
#: to 64 KiB in workers so that freed memory goes back to the OS at once; the ingest's many
#: short-lived arrays then pay for fresh pages over and over (a quarter of a worker's time on
#: CATH domains), so glibc's own adaptive threshold is kept. The statistical profiler, which
#: samples the task thread every 10 ms for the dashboard the local cluster does not serve, is
#: off. Processes are forked from a server that has imported what a task needs once
#: (:data:`WORKER_PRELOAD`) instead of spawned afresh: each spawned nanny and worker imported
#: them itself (torch alone takes seconds), which made start-up most of a run on a few hundred
#: files. An existing cluster (``--scheduler``) keeps its own settings.
LOCAL_WORKER_CONFIG: dict[str, Any] = {
    # the driver owns Ctrl-C (workers ignore SIGINT instead of each printing a traceback)
    "distributed.worker.preload": ["ptk.pipelines._dask_worker"],
    "distributed.nanny.pre-spawn-environ.MALLOC_TRIM_THRESHOLD_": None,
    "distributed.worker.profile.enabled": False,
    "distributed.worker.multiprocessing-method": (
        "forkserver" if "forkserver" in multiprocessing.get_all_start_methods() else "spawn"
    ),
}
#: Modules the fork server imports before forking the local cluster's processes.
#: The first one makes the server (and so every worker) ignore Ctrl-C, which the driver handles.
WORKER_PRELOAD = (
    "ptk.pipelines._dask_worker",
    "distributed",
    "numpy",
    "gemmi",
    "pyarrow.parquet",
    "torch",
    "ptk.features",
    "ptk.pipelines.ingest.task",
)


def local_cluster(n_workers: int, log_level: int = logging.WARNING) -> Any:
    """The ``dask.distributed.LocalCluster`` a run without ``--scheduler`` uses: ``n_workers``
    processes of one thread each, no dashboard, :data:`LOCAL_WORKER_CONFIG`."""
    import dask
    from distributed import LocalCluster
    from distributed.utils import get_mp_context

    with dask.config.set(LOCAL_WORKER_CONFIG):
        context = get_mp_context()  # Dask sets its own preload list on its first call: replace it
        if context.get_start_method() == "forkserver":
            import multiprocessing.forkserver

            context.set_forkserver_preload(list(WORKER_PRELOAD))
            # Started here with SIGINT blocked, a mask that survives fork and exec: the server
            # holds Ctrl-C pending from its first instruction until its first preload ignores it
            # and unblocks it (the driver handles it; one pressed while the server imports its
            # preloads would otherwise kill it). Only this thread's mask changes, never the
            # process's disposition, so the driver still sees a Ctrl-C pressed meanwhile.
            signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT})
            try:
                multiprocessing.forkserver.ensure_running()
            finally:
                signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGINT})
        return LocalCluster(
            n_workers=n_workers,
            threads_per_worker=1,
            processes=True,
            dashboard_address=None,
            scheduler_kwargs={"dashboard": False},
            silence_logs=log_level,
        )
