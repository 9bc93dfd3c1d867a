"""``ptk fetch`` end to end, with no internet: a real ThreadingHTTPServer on 127.0.0.1 serves
``../shared/data`` (and files the tests write) laid out like the real sources, and every command
fetches through ``--mirror``. The server can drop a connection mid-body, answer 500, and resume
with Range requests, and it logs every request so the tests can say what went over the wire.
"""

from __future__ import annotations

import csv
import gzip
import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import threading
import time
import urllib.parse
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from click.testing import CliRunner

from ptk.errors import ConfigError, FetchError
from ptk.fetching import (
    FAILURES_NAME,
    STATE_DIR,
    RemoteFile,
    fetch,
    find_manifests,
    load_manifest,
    mirror_url,
    read_ids,
    retry_delay,
)
from ptk.pipelines.cli import cli
from ptk.structure import read_chains

REPO = Path(__file__).resolve().parents[1]
SPLITS_SHA = "8e9a587a50c7f6c026e4ed00f6c1c30b106100f36f7a01de47542bdfc060adc2"
# Where each source keeps its files (the URL paths of data_manifests/*.toml).
INGRAHAM = "ingraham/graph-protein-design/data/cath"
CATH_API = "version/v4_3_0/api/rest/id"
CATH_RELEASE = "cath/releases/all-releases/v4_3_0"
RCSB = "download"


class _Handler(BaseHTTPRequestHandler):
    server: _Mirror

    def do_GET(self) -> None:  # noqa: N802 (http.server's naming)
        path = urllib.parse.unquote(urllib.parse.urlsplit(self.path).path)
        rng = self.headers.get("Range")
        with self.server.lock:
            self.server.requests.append((path, rng))
            queue = self.server.faults.get(path)
            fault = queue.pop(0) if queue else None
        if fault is not None and fault.isdigit():
            self.send_error(int(fault))
            return
        parts = [p for p in path.split("/") if p]
        target = self.server.root.joinpath(*parts)
        if ".." in parts or not target.is_file():
            self.send_error(404)
            return
        data = target.read_bytes()
        match = re.fullmatch(r"bytes=(\d+)-", rng or "")
        start = int(match.group(1)) if match else 0
        if start >= len(data) > 0:
            self.send_error(416)
            return
        self.send_response(206 if match else 200)
        if match:
            self.send_header("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")
        body = data[start:]
        self.send_header("Content-Type", "application/octet-stream")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if fault == "drop":  # half the body, then the connection closes (HTTP/1.0)
            self.wfile.write(body[: len(body) // 2])
        else:
            self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:
        pass


class _Mirror(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, root: Path) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.root = root
        self.lock = threading.Lock()
        self.faults: dict[str, list[str]] = {}
        self.requests: list[tuple[str, str | None]] = []

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}/"

    def put(self, rel: str, source: Path | bytes) -> Path:
        """Serve ``source`` (a shared-data file, linked, or bytes) at URL path ``rel``."""
        target = self.root / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        if isinstance(source, bytes):
            target.write_bytes(source)
        else:
            target.symlink_to(source)
        return target

    def hits(self, rel: str) -> list[str | None]:
        with self.lock:
            return [rng for path, rng in self.requests if path == "/" + rel]


@pytest.fixture(autouse=True)
def _no_internet(monkeypatch: pytest.MonkeyPatch) -> None:
    # Anything not rewritten onto the 127.0.0.1 mirror would go to a proxy that refuses at once.
    for var in ("http_proxy", "https_proxy", "ftp_proxy", "HTTP_PROXY", "HTTPS_PROXY", "FTP_PROXY"):
        monkeypatch.setenv(var, "http://127.0.0.1:9")
    for var in ("no_proxy", "NO_PROXY", "all_proxy", "ALL_PROXY", "PTK_DATA_MANIFESTS"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("PTK_FETCH_BACKOFF", "0.01")


@pytest.fixture
def mirror(tmp_path: Path):
    server = _Mirror(tmp_path / "mirror")
    server.root.mkdir()
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        yield server
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=10)


def _chain_set_jsonl(shared_data: Path, n: int = 12) -> bytes:
    """A small chain_set.jsonl in the Ingraham format, from the real TS50 chains."""
    lines = []
    for entry in json.loads((shared_data / "cath" / "ts50" / "ts50.json").read_text())[:n]:
        coords = {atom: [res[k] for res in entry["coords"]] for k, atom in enumerate(("N", "CA", "C", "O"))}
        name = f"{entry['name'][:4].lower()}.{entry['name'][4:]}"
        lines.append(json.dumps({"name": name, "seq": entry["seq"], "coords": coords, "num_chains": 1}))
    return ("\n".join(lines) + "\n").encode()


@pytest.fixture
def cath42_mirror(mirror: _Mirror, shared_data: Path) -> _Mirror:
    mirror.put(f"{INGRAHAM}/chain_set_splits.json", shared_data / "cath" / "chain_set_splits.json")
    mirror.put(f"{INGRAHAM}/chain_set.jsonl", _chain_set_jsonl(shared_data))
    return mirror


@pytest.fixture
def cath_mirror(mirror: _Mirror, shared_data: Path, dompdb_files: list[Path]) -> _Mirror:
    for path in dompdb_files:
        mirror.put(f"{CATH_API}/{path.name}.pdb", path)
    # The truncated v4.3.0 domain list in shared/data stands in for the full release file.
    cath = shared_data / "cath"
    mirror.put(f"{CATH_RELEASE}/cath-classification-data/cath-domain-list-v4_3_0.txt",
               cath / "cath-domain-list-v4_3_0.partial.txt")  # fmt: skip
    mirror.put(f"{CATH_RELEASE}/non-redundant-data-sets/cath-dataset-nonredundant-S40-v4_3_0.list",
               cath / "cath-dataset-nonredundant-S40-v4_3_0.list")  # fmt: skip
    return mirror


DEPOSITED = ("3SB3", "4MS6", "7KFR")


@pytest.fixture
def pdb_mirror(mirror: _Mirror, shared_data: Path) -> _Mirror:
    for pdb_id in DEPOSITED:
        raw = (shared_data / "qfit" / "deposited" / f"{pdb_id}.pdb").read_bytes()
        mirror.put(f"{RCSB}/{pdb_id}.pdb.gz", gzip.compress(raw, mtime=0))
    return mirror


def ptk_fetch(*args: str, mirror: _Mirror) -> tuple[int, str]:
    result = CliRunner().invoke(cli, ["fetch", *args, "--mirror", mirror.url, "--timeout", "10"])
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        raise result.exception
    return result.exit_code, result.stdout


def failures(dest: Path) -> dict[str, dict[str, str]]:
    with open(dest / FAILURES_NAME, newline="") as fh:
        return {row["id"]: row for row in csv.DictReader(fh, delimiter="\t")}


def sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


# --------------------------------------------------------------------------------------------
# Pieces


def test_mirror_url_replaces_scheme_and_host_and_prefixes_the_mirror_path() -> None:
    src = "https://files.rcsb.org/download/1ABC.cif.gz?x=1"
    assert mirror_url(src, None) == src
    assert mirror_url(src, "http://127.0.0.1:8000") == "http://127.0.0.1:8000/download/1ABC.cif.gz?x=1"
    assert mirror_url(src, "http://m.example/pdb/") == "http://m.example/pdb/download/1ABC.cif.gz?x=1"
    assert mirror_url(src, "file:///srv/mirror") == "file:///srv/mirror/download/1ABC.cif.gz?x=1"


def test_retry_delay_doubles_is_capped_and_honours_retry_after() -> None:
    class Top:  # the random factor at its maximum, 1
        def random(self) -> float:
            return 1.0

    assert [retry_delay(a, 1.0, 60.0, rng=Top()) for a in range(8)] == [1, 2, 4, 8, 16, 32, 60, 60]
    delays = [retry_delay(3, 1.0, 60.0) for _ in range(50)]
    assert all(4.0 <= d <= 8.0 for d in delays)  # jitter within [0.5, 1] × 8 s
    assert retry_delay(0, 0.01, 60.0, retry_after=5.0) == 5.0
    assert retry_delay(0, 0.01, 60.0, retry_after=600.0) == 60.0


def test_shipped_manifests_load_and_their_lists_are_the_shared_lists(shared_data: Path) -> None:
    names = find_manifests()
    assert {"cath42", "cath-domains", "pdb"} <= set(names)
    cath42 = load_manifest(names["cath42"])
    assert {f.path: f.sha256 for f in cath42.files}["chain_set_splits.json"] == SPLITS_SHA
    pdb = load_manifest(names["pdb"])
    for name, shared in (("qfit-xray", "qFit_biological_testset_pdb_testset.txt"),
                         ("qfit-cryoem", "qFit_test_set_cyro_em.txt")):  # fmt: skip
        id_list = pdb.lists[name]
        assert id_list.file.read_bytes() == (shared_data / "qfit" / "lists" / shared).read_bytes()
        assert sha(id_list.file) == id_list.sha256
    assert len(read_ids(pdb.lists["qfit-xray"].file)) == 174  # 4ZOT is listed twice
    assert len(read_ids(pdb.lists["qfit-cryoem"].file)) == 27
    files, invalid = pdb.files_for_ids(["1BN6", "1bn6", "6CVM", "xyz"], "cif")
    assert [(f.key, f.url, f.path) for f in files] == [
        ("1bn6", "https://files.rcsb.org/download/1BN6.cif.gz", "cif/1bn6.cif.gz"),
        ("6cvm", "https://files.rcsb.org/download/6CVM.cif.gz", "cif/6cvm.cif.gz"),
    ]
    assert invalid == ["xyz"]


# --------------------------------------------------------------------------------------------
# The command, through the mirror


def test_full_fetch_then_a_second_run_fetches_nothing(cath42_mirror: _Mirror, tmp_path: Path,
                                                      shared_data: Path) -> None:  # fmt: skip
    dest = tmp_path / "cath42"
    code, out = ptk_fetch("cath42", "--dest", str(dest), mirror=cath42_mirror)
    assert code == 0, out
    assert "2 fetched, 0 already present, 0 failed" in out
    assert f"next: ptk ingest cath {dest}/chain_set.jsonl --splits {dest}/chain_set_splits.json" in out
    assert sha(dest / "chain_set_splits.json") == SPLITS_SHA
    assert (dest / "chain_set.jsonl").read_bytes() == (
        cath42_mirror.root / INGRAHAM / "chain_set.jsonl"
    ).read_bytes()
    assert sorted(p.name for p in dest.iterdir()) == [STATE_DIR, "chain_set.jsonl", "chain_set_splits.json"]
    ledger = (dest / STATE_DIR / "SHA256SUMS").read_text().splitlines()
    assert f"{SPLITS_SHA}  chain_set_splits.json" in ledger and len(ledger) == 2
    assert not list((dest / STATE_DIR / "partial").rglob("*.part"))

    served = len(cath42_mirror.requests)
    code, out = ptk_fetch("cath42", "--dest", str(dest), mirror=cath42_mirror)
    assert code == 0 and "0 fetched, 2 already present, 0 failed" in out
    assert len(cath42_mirror.requests) == served  # nothing asked of the server


def test_interrupted_download_leaves_no_final_file_and_the_next_run_resumes_it(
    cath42_mirror: _Mirror, tmp_path: Path
) -> None:
    dest = tmp_path / "cath42"
    rel = f"{INGRAHAM}/chain_set.jsonl"
    source = (cath42_mirror.root / rel).read_bytes()
    cath42_mirror.faults["/" + rel] = ["drop"]

    code, out = ptk_fetch("cath42", "--dest", str(dest), "--retries", "0", mirror=cath42_mirror)
    assert code == 1
    assert f"1 fetched, 0 already present, 1 failed → {dest / FAILURES_NAME}" in out
    assert not (dest / "chain_set.jsonl").exists()  # no half file under the final name
    part = dest / STATE_DIR / "partial" / "chain_set.jsonl.part"
    assert part.stat().st_size == len(source) // 2
    row = failures(dest)["chain_set.jsonl"]
    assert "connection closed after" in row["reason"] and row["attempts"] == "1"

    code, out = ptk_fetch("cath42", "--dest", str(dest), mirror=cath42_mirror)
    assert code == 0 and "1 fetched, 1 already present, 0 failed" in out
    assert cath42_mirror.hits(rel) == [None, f"bytes={len(source) // 2}-"]  # resumed, not restarted
    assert (dest / "chain_set.jsonl").read_bytes() == source
    assert not (dest / FAILURES_NAME).exists()
    assert not part.exists()


def test_dropped_connection_is_retried_within_the_run(cath42_mirror: _Mirror, tmp_path: Path) -> None:
    rel = f"{INGRAHAM}/chain_set_splits.json"
    cath42_mirror.faults["/" + rel] = ["drop"]
    code, out = ptk_fetch("cath42", "--dest", str(tmp_path / "d"), mirror=cath42_mirror)
    assert code == 0 and "2 fetched, 0 already present, 0 failed" in out
    assert len(cath42_mirror.hits(rel)) == 2 and cath42_mirror.hits(rel)[1].startswith("bytes=")
    assert sha(tmp_path / "d" / "chain_set_splits.json") == SPLITS_SHA


def test_corrupted_files_are_caught_by_their_checksums_and_fetched_again(
    cath42_mirror: _Mirror, tmp_path: Path
) -> None:
    dest = tmp_path / "cath42"
    assert ptk_fetch("cath42", "--dest", str(dest), mirror=cath42_mirror)[0] == 0
    good_jsonl = (dest / "chain_set.jsonl").read_bytes()
    # the split file is checked against the manifest's sha256, the JSONL against the one recorded
    # when it was fetched; flip one byte of each, same size and mtime-agnostic
    for name in ("chain_set_splits.json", "chain_set.jsonl"):
        data = bytearray((dest / name).read_bytes())
        data[len(data) // 3] ^= 0x20
        (dest / name).write_bytes(bytes(data))

    code, out = ptk_fetch("cath42", "--dest", str(dest), mirror=cath42_mirror)
    assert code == 0 and "2 fetched, 0 already present, 0 failed" in out
    assert sha(dest / "chain_set_splits.json") == SPLITS_SHA
    assert (dest / "chain_set.jsonl").read_bytes() == good_jsonl


def test_server_sending_the_wrong_bytes_fails_the_manifest_checksum(
    cath42_mirror: _Mirror, tmp_path: Path
) -> None:
    rel = f"{INGRAHAM}/chain_set_splits.json"
    (cath42_mirror.root / rel).unlink()
    cath42_mirror.put(rel, b'{"train": [], "validation": [], "test": []}')
    dest = tmp_path / "d"
    code, out = ptk_fetch("cath42", "--dest", str(dest), "--retries", "1", mirror=cath42_mirror)
    assert code == 1 and "1 fetched, 0 already present, 1 failed" in out
    reason = failures(dest)["chain_set_splits.json"]["reason"]
    assert "does not match the manifest's 8e9a587a50c7" in reason and "2 attempts" in reason
    assert not (dest / "chain_set_splits.json").exists()


def test_missing_and_invalid_ids_are_reported_and_the_rest_fetched(
    pdb_mirror: _Mirror, tmp_path: Path, shared_data: Path
) -> None:
    ids = tmp_path / "ids.txt"
    ids.write_text("# qFit deposited entries\n3SB3\n4ms6  chain A\n9ZZZ\nnot-an-id\n7KFR\n3sb3\n")
    dest = tmp_path / "pdb"
    code, out = ptk_fetch("pdb", "--ids", str(ids), "--format", "pdb", "--dest", str(dest), mirror=pdb_mirror)
    assert code == 1
    assert f"3 fetched, 0 already present, 2 failed → {dest / FAILURES_NAME}" in out
    assert f"next: ptk ingest qfit {dest}/pdb" in out
    rows = failures(dest)
    assert set(rows) == {"9zzz", "not-an-id"}
    assert rows["9zzz"]["reason"].startswith("HTTP 404") and rows["9zzz"]["attempts"] == "1"
    assert rows["9zzz"]["url"] == pdb_mirror.url + "download/9ZZZ.pdb.gz"
    assert "not a valid pdb ID" in rows["not-an-id"]["reason"]
    assert len(pdb_mirror.hits("download/9ZZZ.pdb.gz")) == 1  # a 404 is not retried
    for pdb_id in DEPOSITED:
        got = dest / "pdb" / f"{pdb_id.lower()}.pdb.gz"
        assert (
            gzip.decompress(got.read_bytes())
            == (shared_data / "qfit" / "deposited" / f"{pdb_id}.pdb").read_bytes()
        )
    parsed = read_chains(dest / "pdb" / "3sb3.pdb.gz", altlocs=True)  # what ingest will read
    assert parsed.pdb_id == "3sb3" and any((c.conformers.n_conformers > 1).any() for c in parsed.chains)

    # the missing entry appears on the mirror: the next run fetches just that one
    pdb_mirror.put(f"{RCSB}/9ZZZ.pdb.gz", (pdb_mirror.root / RCSB / "3SB3.pdb.gz").read_bytes())
    code, out = ptk_fetch("pdb", "--ids", str(ids), "--format", "pdb", "--dest", str(dest), mirror=pdb_mirror)
    assert "1 fetched, 3 already present, 1 failed" in out and set(failures(dest)) == {"not-an-id"}


def test_server_error_is_retried_with_backoff_and_bounded(pdb_mirror: _Mirror, tmp_path: Path) -> None:
    pdb_mirror.faults["/download/3SB3.pdb.gz"] = ["500", "503"]
    pdb_mirror.faults["/download/4MS6.pdb.gz"] = ["500"] * 10
    dest = tmp_path / "pdb"
    ids = tmp_path / "ids.txt"
    ids.write_text("3SB3\n4MS6\n")
    started = time.monotonic()
    code, out = ptk_fetch("pdb", "--ids", str(ids), "--format", "pdb", "--dest", str(dest),
                          "--retries", "3", "--backoff", "0.1", mirror=pdb_mirror)  # fmt: skip
    elapsed = time.monotonic() - started
    assert code == 1 and "1 fetched, 0 already present, 1 failed" in out
    assert len(pdb_mirror.hits("download/3SB3.pdb.gz")) == 3  # 500, 503, then the file
    assert len(pdb_mirror.hits("download/4MS6.pdb.gz")) == 4  # 1 + 3 retries, then it gives up
    row = failures(dest)["4ms6"]
    assert row["reason"].startswith("HTTP 500") and "gave up after 4 attempts" in row["reason"]
    # back-off 0.1 · (1 + 2 + 4) s, each at least halved by the jitter
    assert elapsed >= 0.35
    assert (dest / "pdb" / "3sb3.pdb.gz").is_file() and not (dest / "pdb" / "4ms6.pdb.gz").exists()


def test_cath_domains_by_id_file_land_in_the_dompdb_layout(cath_mirror: _Mirror, tmp_path: Path,
                                                          dompdb_files: list[Path]) -> None:  # fmt: skip
    ids = tmp_path / "domains.txt"
    ids.write_text("".join(f"{p.name}\n" for p in dompdb_files))
    dest = tmp_path / "cath"
    code, out = ptk_fetch("cath-domains", "--ids", str(ids), "--dest", str(dest), "--workers", "4",
                          mirror=cath_mirror)  # fmt: skip
    assert code == 0, out
    assert f"{len(dompdb_files) + 1:,} fetched, 0 already present, 0 failed" in out
    for path in dompdb_files:
        assert (dest / "dompdb" / path.name).read_bytes() == path.read_bytes()
    assert (dest / "cath-domain-list-v4_3_0.txt").is_file()
    assert read_chains(dest / "dompdb" / "1c0pA01").chains[0].chain_id == "1c0p.A"


def test_cath_domains_named_list_is_fetched_first_then_its_ids(cath_mirror: _Mirror, tmp_path: Path) -> None:
    dest = tmp_path / "s40"
    # the first 724 S40 domains include 1c0pA01 (line 723), the only one of them on the mirror
    code, out = ptk_fetch("cath-domains", "--list", "cath-dataset-nonredundant-S40", "--limit", "724",
                          "--dest", str(dest), "--workers", "8", mirror=cath_mirror)  # fmt: skip
    assert code == 1
    assert f"3 fetched, 0 already present, 723 failed → {dest / FAILURES_NAME}" in out
    assert (dest / "cath-dataset-nonredundant-S40-v4_3_0.list").is_file()
    assert (dest / "dompdb" / "1c0pA01").is_file()
    rows = failures(dest)
    assert len(rows) == 723 and "12asA00" in rows and "1c0pA01" not in rows
    assert list(rows)[:2] == ["12asA00", "132lA00"]  # rows keep the list's order


def test_file_mirror_and_an_unknown_list_or_missing_ids(pdb_mirror: _Mirror, tmp_path: Path) -> None:
    ids = tmp_path / "ids.txt"
    ids.write_text("7KFR\n")
    args = ["fetch", "pdb", "--ids", str(ids), "--format", "pdb", "--dest", str(tmp_path / "d")]
    result = CliRunner().invoke(cli, [*args, "--mirror", pdb_mirror.root.as_uri()])
    assert result.exit_code == 0, result.output
    assert (
        "1 fetched, 0 already present, 0 failed" in result.stdout
        and (tmp_path / "d" / "pdb" / "7kfr.pdb.gz").is_file()
    )
    result = CliRunner().invoke(cli, ["fetch", "pdb", "--list", "nope"])
    assert result.exit_code == 2 and "'nope' is not one of 'qfit-xray', 'qfit-cryoem'" in result.output
    result = CliRunner().invoke(cli, ["fetch", "pdb", "--dest", str(tmp_path / "e")])
    assert result.exit_code == 2 and "exactly one of --ids FILE or --list NAME" in result.output


def test_a_new_manifest_is_a_new_subcommand(mirror: _Mirror, shared_data: Path, tmp_path: Path,
                                            monkeypatch: pytest.MonkeyPatch) -> None:  # fmt: skip
    mirror.put("gvp/data/ts50.json", shared_data / "cath" / "ts50" / "ts50.json")
    folder = tmp_path / "manifests"
    folder.mkdir()
    (folder / "ts50.toml").write_text(
        '[dataset]\nname = "ts50"\ntitle = "TS50 benchmark chains (gvp-pytorch)"\nlicence = "MIT"\n\n'
        '[[files]]\npath = "ts50.json"\nurl = "https://example.org/gvp/data/ts50.json"\n'
        f'sha256 = "{sha(shared_data / "cath" / "ts50" / "ts50.json")}"\n'
    )
    monkeypatch.setenv("PTK_DATA_MANIFESTS", str(folder))
    assert "TS50 benchmark chains" in CliRunner().invoke(cli, ["fetch", "--help"]).output
    code, out = ptk_fetch("ts50", "--dest", str(tmp_path / "ts50"), mirror=mirror)
    assert code == 0 and "1 fetched, 0 already present, 0 failed" in out


def test_console_transcript(pdb_mirror: _Mirror, tmp_path: Path) -> None:
    ids = tmp_path / "ids.txt"
    ids.write_text("3SB3\n1ZZZ\n")
    dest = tmp_path / "pdb"
    env = {**os.environ, "PTK_FETCH_BACKOFF": "0"}
    cmd = [sys.executable, "-m", "ptk.pipelines.cli", "fetch", "pdb", "--ids", str(ids), "--format", "pdb",
           "--dest", str(dest), "--mirror", pdb_mirror.url.rstrip("/"), "--timeout", "10"]  # fmt: skip
    result = subprocess.run(cmd, capture_output=True, text=True, timeout=120, env=env)
    assert result.returncode == 1, result.stderr
    assert result.stdout.splitlines()[0] == f"1 fetched, 0 already present, 1 failed → {dest / FAILURES_NAME}"
    assert "1zzz: HTTP 404" in result.stderr
    shutil.rmtree(dest / "pdb")
    result = subprocess.run(cmd, capture_output=True, text=True, timeout=120, env=env)
    assert result.stdout.startswith("1 fetched, 0 already present, 1 failed")


def test_a_manifest_with_an_unknown_key_names_the_allowed_ones(tmp_path: Path) -> None:
    path = tmp_path / "bad.toml"
    head = '[dataset]\nname = "bad"\ntitle = "t"\n\n[[files]]\n'
    path.write_text(head + 'path = "a"\nurl = "http://x/a"\nsha = "0"\n')
    with pytest.raises(ConfigError, match=r"unknown key\(s\) sha; allowed: note, path, sha256, url"):
        load_manifest(path)
    path.write_text(head + 'path = "../a"\nurl = "http://x/a"\n')
    with pytest.raises(ConfigError, match="must stay inside the destination folder"):
        load_manifest(path)


def test_a_second_fetch_into_the_same_folder_is_refused(tmp_path: Path) -> None:
    state = tmp_path / "d" / STATE_DIR
    state.mkdir(parents=True)
    (state / "lock").write_text(str(os.getppid()))  # a live process that is not this one
    with pytest.raises(FetchError, match=f"another ptk fetch \\(pid {os.getppid()}\\)"):
        fetch([RemoteFile("a", "http://127.0.0.1:9/a", "a")], tmp_path / "d")
    (state / "lock").write_text("999999999")  # stale: taken over
    report = fetch([], tmp_path / "d")
    assert report.summary() == "0 fetched, 0 already present, 0 failed" and not (state / "lock").exists()


def test_an_unreachable_host_stops_the_run_within_seconds(tmp_path: Path) -> None:
    """Nothing listens at the mirror (as with no network): the first connection failure stops
    the run with one line instead of retrying every file (5 retries each took minutes), and
    every file is in fetch_failures.tsv, the untried ones saying so."""
    import socket

    with socket.socket() as sock:  # a free loopback port, closed again: connections are refused
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    ids = tmp_path / "ids.txt"
    ids.write_text("".join(f"{i}ABC\n" for i in range(1, 10)) + "".join(f"{i}XYZ\n" for i in range(1, 10)))
    dest = tmp_path / "pdb"
    cmd = [sys.executable, "-m", "ptk.pipelines.cli", "fetch", "pdb", "--ids", str(ids), "--dest", str(dest),
           "--mirror", f"http://127.0.0.1:{port}", "--retries", "5", "--backoff", "2"]  # fmt: skip
    started = time.monotonic()
    result = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    elapsed = time.monotonic() - started
    assert result.returncode == 1 and elapsed < 20, (elapsed, result.stderr)
    last = result.stderr.strip().splitlines()[-1]
    assert (
        last.startswith("ptk: error: 127.0.0.1: cannot connect")
        and "stopped before fetching anything" in last
    )
    rows = failures(dest)
    assert len(rows) == 18 and all("cannot connect" in r["reason"] for r in rows.values())
    assert all(r["attempts"] in ("0", "1") for r in rows.values())  # 0: not tried; none retried
