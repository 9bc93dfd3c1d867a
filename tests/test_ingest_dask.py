"""The two Dask paths of ``ptk ingest``, through the real console script:

- no ``--scheduler``: the default local cluster (``--workers 2`` processes);
- ``--scheduler tcp://127.0.0.1:PORT``: a real ``dask scheduler`` and ``dask worker`` started as
  processes here;

each must write the same dataset as the in-process ``--scheduler synchronous`` run. Cluster
start-up costs seconds, so these are the only tests that start one.
"""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from ptk import shards

pytestmark = pytest.mark.slow


def _inputs(shared_data: Path) -> list[str]:
    dompdb = sorted((shared_data / "cath" / "dompdb").iterdir())
    garbage = shared_data / "cath" / "testset_ingraham_topologies.txt"  # not a structure: a reject
    return [*map(str, dompdb[:8]), str(shared_data / "cath" / "ts50" / "ts50.json"), str(garbage)]


def _ptk(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(["ptk", *args], capture_output=True, text=True, timeout=300)


def _dataset(out: Path) -> tuple[str, str, list]:
    manifest = shards.read_manifest(out)
    parts = [(p["file"], p["rows"], p["inputs"]) for p in manifest["parts"]]
    return (
        json.dumps(shards.read_table(out).to_pylist()),
        json.dumps(shards.read_rejects(out).to_pylist()),
        parts,
    )


@pytest.fixture(scope="module")
def reference(tmp_path_factory: pytest.TempPathFactory, shared_data: Path) -> tuple:
    out = tmp_path_factory.mktemp("sync") / "shards"
    proc = _ptk(
        "ingest",
        "cath",
        *_inputs(shared_data),
        "--out",
        str(out),
        "--scheduler",
        "synchronous",
        "--shard-rows",
        "20",
    )
    assert proc.returncode == 0, proc.stderr
    return _dataset(out)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture()
def cluster(tmp_path: Path) -> Iterator[str]:
    port = _free_port()
    address = f"tcp://127.0.0.1:{port}"
    logs = [open(tmp_path / n, "w") for n in ("scheduler.log", "worker.log")]  # noqa: SIM115
    scheduler = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "distributed.cli.dask_scheduler",
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--no-dashboard",
        ],
        stdout=logs[0],
        stderr=subprocess.STDOUT,
    )
    procs = [scheduler]
    try:
        worker = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "distributed.cli.dask_worker",
                address,
                "--nthreads",
                "1",
                "--nworkers",
                "1",
                "--no-dashboard",
                "--host",
                "127.0.0.1",
            ],
            stdout=logs[1],
            stderr=subprocess.STDOUT,
        )
        procs.append(worker)
        from distributed import Client

        deadline = time.monotonic() + 120
        while True:
            try:
                with Client(address, timeout="5s") as client:
                    client.wait_for_workers(1, timeout=120)
                break
            except OSError:
                if time.monotonic() > deadline or scheduler.poll() is not None:
                    raise
                time.sleep(0.5)
        yield address
    finally:
        for proc in reversed(procs):
            proc.terminate()
        for proc in reversed(procs):
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                proc.kill()
        for log in logs:
            log.close()


def test_existing_cluster_via_scheduler_address(
    cluster: str, reference: tuple, tmp_path: Path, shared_data: Path
) -> None:
    out = tmp_path / "shards"
    proc = _ptk(
        "ingest",
        "cath",
        *_inputs(shared_data),
        "--out",
        str(out),
        "--scheduler",
        cluster,
        "--shard-rows",
        "20",
    )
    assert proc.returncode == 0, proc.stderr
    assert (
        proc.stdout.strip().splitlines()[-1]
        == f"58 chains from 9 files; 1 rejected → {out / 'rejects.parquet'}"
    )
    assert _dataset(out) == reference


def test_default_local_cluster(reference: tuple, tmp_path: Path, shared_data: Path) -> None:
    out = tmp_path / "shards"
    proc = _ptk(
        "ingest", "cath", *_inputs(shared_data), "--out", str(out), "--workers", "2", "--shard-rows", "20"
    )
    assert proc.returncode == 0, proc.stderr
    assert "58 chains from 9 files; 1 rejected" in proc.stdout
    assert "\r" not in proc.stderr  # no progress bar when stderr is not a terminal
    assert _dataset(out) == reference


def test_unreachable_scheduler_is_a_usage_error(tmp_path: Path, shared_data: Path) -> None:
    proc = _ptk(
        "ingest",
        "qfit",
        str(shared_data / "qfit" / "fragments" / "AFA_single.pdb"),
        "--out",
        str(tmp_path / "o"),
        "--scheduler",
        f"tcp://127.0.0.1:{_free_port()}",
    )
    assert proc.returncode == 2 and "cannot reach the Dask scheduler" in proc.stderr


def test_workers_that_cannot_write_into_out_send_their_rows_back(
    cluster: str, reference: tuple, tmp_path: Path, shared_data: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from distributed import Client

    from ptk.pipelines import ingest as pipeline
    from ptk.pipelines.ingest import executors

    with Client(cluster, timeout="30s") as client:
        assert executors._workers_share(client, tmp_path)
        # a folder the worker cannot reach (as on a cluster without a shared file system)
        assert not executors._workers_share(client, tmp_path / "only-on-the-driver")
    assert not list(tmp_path.glob(".probe-*"))

    # Such a cluster's rows come back to this process, which writes the same parts.
    monkeypatch.setattr(executors, "_workers_share", lambda client, folder: False)
    out = tmp_path / "shards"
    summary = pipeline.run_ingest(
        "cath", _inputs(shared_data), out, scheduler=cluster, shard_rows=20, progress=False
    )
    assert summary.rows == 58 and summary.rejects == 1
    assert _dataset(out) == reference
    assert not list(out.glob(".*.tmp"))


def test_a_task_that_dies_is_retried_file_by_file(
    tmp_path: Path, shared_data: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from distributed import Client, LocalCluster

    from ptk.pipelines import ingest as pipeline
    from ptk.pipelines.ingest import executors

    files = sorted((shared_data / "cath" / "dompdb").iterdir())[:6]
    poison = str(files[2])  # a good file, but its worker "dies" on it
    real = pipeline.process_batch

    def dies_on_poison(kind: str, batch: list, *args: object) -> object:
        if any(unit.path == poison for unit in batch):
            raise RuntimeError("worker died")
        return real(kind, batch, *args)

    reference = tmp_path / "sync"
    pipeline.run_ingest("cath", files, reference, scheduler="synchronous", shard_rows=4, progress=False)
    monkeypatch.setattr(executors, "process_batch", dies_on_poison)
    out = tmp_path / "shards"
    # A real scheduler and worker, in this process so that the failing task function reaches it.
    with LocalCluster(n_workers=1, threads_per_worker=1, processes=False, dashboard_address=None) as cluster:
        with Client(cluster):
            summary = pipeline.run_ingest(
                "cath", files, out, scheduler=cluster.scheduler_address, shard_rows=4, progress=False
            )
    assert summary.rows == 5 and summary.rejects == 1
    (reject,) = shards.read_rejects(out).to_pylist()
    assert (reject["input"], reject["stage"], reject["message"]) == (poison, "worker", "worker died")
    # The other files' rows are the synchronous run's, in the same order; no temporary file is left.
    expected = [row for row in shards.read_table(reference).to_pylist() if row["source"] != poison]
    assert json.dumps(shards.read_table(out).to_pylist()) == json.dumps(expected)
    # tasks of 4 files: the retried one's three good files are its part, as if it had not died
    assert [p["rows"] for p in shards.read_manifest(out)["parts"]] == [3, 2]
    assert not list(out.glob(".*.tmp"))


def test_ctrl_c_the_instant_the_fork_server_starts_is_not_lost(tmp_path: Path, shared_data: Path) -> None:
    """The fork server is started with Ctrl-C held off (so that it cannot die importing its
    preloads); one pressed at that instant still reaches the driver: status 130, not a run that
    carries on as if no key had been pressed (what CI once saw when the driver ignored SIGINT
    for that moment)."""
    inputs = sorted(map(str, (shared_data / "cath" / "dompdb").iterdir()))[:4]
    script = (
        "import os, signal, sys\n"
        "import multiprocessing.forkserver as fs\n"
        "start = fs.ensure_running\n"
        "def pressed():\n"
        "    os.kill(os.getpid(), signal.SIGINT)  # Ctrl-C as the fork server starts\n"
        "    start()\n"
        "fs.ensure_running = pressed\n"
        "from ptk.pipelines.cli import main\n"
        "sys.argv = ['ptk', *sys.argv[1:]]\n"
        "main()\n"
    )
    out = tmp_path / "shards"
    proc = subprocess.run(
        [sys.executable, "-c", script, "ingest", "cath", *inputs, "--out", str(out), "--workers", "1"],
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert proc.returncode == 130, proc.stderr
    assert "Traceback" not in proc.stderr and proc.stderr.strip().splitlines()[-1] == "ptk: aborted"
    assert not list(out.glob("part-*.parquet"))


@pytest.mark.parametrize("when", ["while the cluster starts", "mid-run"])
def test_ctrl_c_on_the_default_cluster_is_one_line_and_resumes(
    when: str, tmp_path: Path, shared_data: Path
) -> None:
    """Ctrl-C on a terminal (SIGINT to the whole process group: driver, fork server, workers)
    ends the run with "ptk: aborted", status 130 and no traceback from Dask or its workers; the
    same command then finishes the dataset."""
    import os
    import shutil
    import signal

    inputs = tmp_path / "in"
    inputs.mkdir()
    for k in range(40):  # 800 small files: a few seconds of work for two workers
        for f in sorted((shared_data / "cath" / "dompdb").iterdir()):
            shutil.copy(f, inputs / f"{f.name}_{k}.pdb")
    out = tmp_path / "shards"
    # as on a terminal: Ctrl-C at its default, even where pytest itself was started in the
    # background (a shell starts background jobs with SIGINT ignored, which children inherit)
    terminal = (
        "import signal, sys\n"
        "signal.signal(signal.SIGINT, signal.default_int_handler)\n"
        "from ptk.pipelines.cli import main\n"
        "sys.argv = ['ptk', *sys.argv[1:]]\n"
        "main()\n"
    )
    cmd = [sys.executable, "-c", terminal, "ingest", "cath", str(inputs), "--out", str(out),
           "--workers", "2", "--shard-rows", "10"]  # fmt: skip
    proc = subprocess.Popen(
        cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True
    )
    if when == "mid-run":
        deadline = time.monotonic() + 60
        while not list(out.glob("part-*.parquet")) and time.monotonic() < deadline and proc.poll() is None:
            time.sleep(0.05)
    else:
        time.sleep(1.0)
    os.killpg(proc.pid, signal.SIGINT)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode in (130, -2), err  # a shell shows both as 130 (-2: ended by the SIGINT itself)
    assert "Traceback" not in err and err.strip().splitlines()[-1] == "ptk: aborted", err
    again = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert again.returncode == 0, again.stderr
    assert len(shards.CathDataset(out)) == 20  # the rest are duplicate ids, rejected
