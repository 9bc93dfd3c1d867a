"""Imported only inside the processes of ``ptk ingest``'s local cluster: first by the fork
server the workers are forked from (the head of :data:`ptk.pipelines.ingest.cluster.WORKER_PRELOAD`),
then by each worker as its Dask preload (``distributed.worker.preload``). Never import it in the
driver: importing it makes the process ignore SIGINT.

Ctrl-C on a terminal reaches the whole process group. The driver owns the interrupt: it stops
the run and closes the cluster, which ends the workers. The fork server and the workers it forks
therefore ignore SIGINT instead of each printing a KeyboardInterrupt traceback (the fork server
keeps, for its children, the SIGINT disposition it finds after its preloads), and the warnings
of a worker's state machine about the tasks that shutdown cancels stay out of the console.
"""

from __future__ import annotations

import logging
import signal
from typing import Any

signal.signal(signal.SIGINT, signal.SIG_IGN)  # drops a Ctrl-C held pending meanwhile
# the fork server starts with SIGINT blocked (see ptk.pipelines.ingest.cluster.local_cluster): ignored now
signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGINT})


def dask_setup(worker: Any) -> None:  # noqa: ARG001 - Dask's preload hook signature
    logging.getLogger("distributed.worker.state_machine").setLevel(logging.ERROR)
