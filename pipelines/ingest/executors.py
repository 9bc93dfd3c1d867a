"""Executors of the ingest's tasks: synchronous (in-process) and dask.distributed.

Both yield the tasks' results in submission (input) order, so the writer can account them in order.
"""

from __future__ import annotations

import contextlib
import logging
import os
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any

from ptk.errors import ConfigError
from ptk.pipelines.ingest.cluster import local_cluster
from ptk.pipelines.ingest.task import Batch, Packed, Unit, _reject_dict, process_batch

log = logging.getLogger("ptk.pipelines.ingest")  # the package's name, as `ptk -v` shows it


class _Synchronous:
    """Runs batches in this process, in order (``--scheduler synchronous``)."""

    n_workers = 1

    def __init__(self, fn: Callable[..., Batch], args: tuple) -> None:
        self.fn, self.args = fn, args

    def map(self, batches: Iterable[list[Unit]]) -> Iterator[Batch]:
        kind, labels, max_length, out, shard_rows = self.args
        for batch in batches:
            yield self.fn(kind, batch, labels, max_length, out, shard_rows)

    def close(self, interrupted: bool = False) -> None:
        pass


def _touch(folder: str) -> str | None:
    """(On a worker.) Create an empty hidden file in ``folder``; its name, or None if it cannot."""
    import uuid

    from ptk.shards import store

    name = store.temporary_name(f"probe-{uuid.uuid4().hex}")
    try:
        Path(folder, name).touch(exist_ok=False)
    except OSError:
        return None
    return name


def _workers_share(client: Any, folder: Path) -> bool:
    """Whether every worker can write into ``folder`` and this process sees what it writes there
    (a local cluster, or a cluster on a shared file system)."""
    names = client.run(_touch, str(folder))
    seen = [name is not None and (folder / name).is_file() for name in names.values()]
    for name in names.values():
        if name is not None:
            (folder / name).unlink(missing_ok=True)
    return bool(seen) and all(seen)


class _Distributed:
    """Submits batches to a dask.distributed client with a bounded window; yields results in
    submission order. A batch whose task fails (a worker died on a file) is retried file by
    file; a single file that still fails becomes a reject (stage ``worker``).

    Workers write their task's parts into ``--out`` themselves when they can (the local
    cluster, or a cluster on a shared file system), so rows never travel through this process;
    otherwise they send the rows back and this process writes the same parts."""

    def __init__(self, client: Any, cluster: Any, fn: Callable[..., Batch], args: tuple) -> None:
        self.client, self.cluster, self.fn = client, cluster, fn
        self.kind, labels, self.max_length, out, self.shard_rows = args
        self.labels = client.scatter(labels, broadcast=True) if labels is not None else None
        self.n_workers = max(1, len(client.scheduler_info(n_workers=-1).get("workers", {})))
        self.out: str | None = str(out)
        if not _workers_share(client, Path(out)):
            log.warning(
                "the Dask workers cannot write into %s (not a folder they share with this "
                "machine): their rows come back here to be written",
                out,
            )
            self.out = None

    def _submit(self, batch: list[Unit], write: bool = True) -> Any:
        out = self.out if write else None
        return self.client.submit(
            self.fn, self.kind, batch, self.labels, self.max_length, out, self.shard_rows, pure=False
        )

    def map(self, batches: Iterable[list[Unit]]) -> Iterator[Batch]:
        from distributed import as_completed

        window = 4 * self.n_workers
        it = iter(batches)
        pending: dict[Any, tuple[int, list[Unit]]] = {}
        done: dict[int, Batch] = {}
        ac = as_completed()
        next_submit = next_yield = 0
        exhausted = False

        def fill() -> None:
            nonlocal next_submit, exhausted
            while not exhausted and len(pending) + len(done) < window:
                batch = next(it, None)
                if batch is None:
                    exhausted = True
                    return
                fut = self._submit(batch)
                pending[fut] = (next_submit, batch)
                ac.add(fut)
                next_submit += 1

        fill()
        while pending or done:
            while next_yield in done:
                yield done.pop(next_yield)
                next_yield += 1
                fill()
            if not pending:
                continue
            fut = next(ac)
            seq, batch = pending.pop(fut)
            try:
                done[seq] = fut.result()
            except Exception as exc:  # noqa: BLE001 - a worker died or the task raised
                done[seq] = self._retry(batch, exc)
            fut.release()
        return

    def _retry(self, batch: list[Unit], exc: BaseException) -> Batch:
        """Each unit of a failed task alone; the rows come back, and the driver writes them as the
        task would have (the same parts)."""
        import pyarrow as pa

        packed: list[Packed] = []
        tables = []
        for unit in batch:
            if len(batch) > 1:
                try:
                    single = self._submit([unit], write=False).result()
                    packed.extend(single.packed)
                    if single.table is not None:
                        tables.append(single.table)
                    continue
                except Exception as inner:  # noqa: BLE001
                    exc = inner
            packed.append(Packed(unit, 0, [_reject_dict(unit, "worker", exc)], 0))
        table = pa.concat_tables(tables) if tables else None
        return Batch(packed, table.column("id").to_pylist() if table is not None else [], table)

    def close(self, interrupted: bool = False) -> None:
        """Close the client (and the local cluster). After an interrupt, Dask's complaints
        about the tasks it cancels are kept out of the console unless asked for (-vv)."""
        if interrupted and logging.getLogger().getEffectiveLevel() > logging.DEBUG:
            for name in ("distributed", "tornado", "asyncio"):
                logging.getLogger(name).setLevel(logging.CRITICAL)
        with contextlib.suppress(Exception):
            self.client.close()
        if self.cluster is not None:
            with contextlib.suppress(Exception):
                self.cluster.close()


def _check_scheduler(value: str | None) -> None:
    """A ConfigError unless ``value`` is None, ``synchronous`` or a Dask address with a host and
    a port (``tcp://HOST:PORT``, or ``HOST:PORT``; ``inproc://`` needs no port)."""
    from urllib.parse import urlsplit

    if value is None or value == "synchronous":
        return
    parts = urlsplit(value if "://" in value else f"tcp://{value}")
    try:
        port = parts.port
    except ValueError:
        port = None
    if parts.scheme == "inproc" and parts.hostname:  # a cluster in this process (Dask's tests, notebooks)
        return
    if parts.scheme not in ("tcp", "tls", "ws", "wss", "ucx") or not parts.hostname or port is None:
        raise ConfigError(
            f"--scheduler {value!r}: expected 'synchronous' or a Dask scheduler address, tcp://HOST:PORT"
        )


def _probe(address: str) -> None:
    """Fail fast (OSError) when nothing listens at a tcp:// scheduler address."""
    import socket
    from urllib.parse import urlsplit

    parts = urlsplit(address if "://" in address else f"tcp://{address}")
    if parts.scheme == "tcp" and parts.hostname and parts.port:
        socket.create_connection((parts.hostname, parts.port), timeout=10).close()


@contextlib.contextmanager
def _interrupt_deferred() -> Iterator[Callable[[], bool]]:
    """Ctrl-C inside the block is remembered, not raised; yields "was there one?" (a cluster
    interrupted half-started fails in Dask's exit hook with a traceback)."""
    import signal
    import threading

    if threading.current_thread() is not threading.main_thread():
        yield lambda: False
        return
    seen: list[int] = []
    previous = signal.signal(signal.SIGINT, lambda signum, frame: seen.append(signum))
    try:
        yield lambda: bool(seen)
    finally:
        signal.signal(signal.SIGINT, previous)


def _executor(scheduler: str | None, workers: int | None, args: tuple) -> _Synchronous | _Distributed:
    if scheduler == "synchronous":
        return _Synchronous(process_batch, args)
    from distributed import Client

    # Dask logs at INFO through the root handler `ptk -v` sets up; keep it quiet unless asked.
    quiet = logging.WARNING if logging.getLogger().getEffectiveLevel() > logging.INFO else logging.INFO
    logging.getLogger("distributed").setLevel(quiet)
    if scheduler is None:
        # Ctrl-C while the cluster starts would leave half-started workers (and Dask's exit hook
        # then fails on them with a traceback): the interrupt waits until it is up and closed.
        with _interrupt_deferred() as interrupted:
            cluster = local_cluster(workers or os.cpu_count() or 1, quiet)
            executor = _Distributed(Client(cluster), cluster, process_batch, args)
        if interrupted():
            executor.close(interrupted=True)
            raise KeyboardInterrupt
        return executor
    if workers is not None:
        log.warning("--workers is ignored with --scheduler %s (the cluster has its own workers)", scheduler)
    try:
        _probe(scheduler)
        client = Client(scheduler, timeout="30s")
    except OSError as exc:
        raise ConfigError(f"cannot reach the Dask scheduler at {scheduler} ({exc})") from exc
    return _Distributed(client, None, process_batch, args)
