"""``ptk.files``: the one write-then-rename and the one file checksum every writer uses."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

from ptk.files import CHUNK_BYTES, atomic_write, atomic_writer, sha256_file


def test_atomic_write_replaces_whole_files(tmp_path: Path) -> None:
    path = tmp_path / "config.json"
    atomic_write(path, "first\n")
    atomic_write(path, b"second\n")
    assert path.read_text() == "second\n"
    assert [p.name for p in tmp_path.iterdir()] == ["config.json"]


@pytest.mark.parametrize("error", [ValueError, KeyboardInterrupt])
def test_a_write_that_fails_midway_leaves_the_old_file_and_no_temporary(
    tmp_path: Path, error: type[BaseException]
) -> None:
    path = tmp_path / "metrics.csv"
    path.write_text("epoch,loss\n1,0.5\n")
    with pytest.raises(error), atomic_writer(path, "w", newline="") as fh:
        fh.write("epoch,loss\n")
        fh.flush()
        raise error
    assert path.read_text() == "epoch,loss\n1,0.5\n"
    assert [p.name for p in tmp_path.iterdir()] == ["metrics.csv"]


def test_the_temporary_file_is_hidden_beside_the_target_until_the_block_ends(tmp_path: Path) -> None:
    path = tmp_path / "last.pt"
    with atomic_writer(path) as fh:
        fh.write(b"abc")
        (tmp,) = tmp_path.iterdir()
        assert tmp.name.startswith(".last.pt.") and tmp.name.endswith(".tmp")
        assert not path.exists()
    assert path.read_bytes() == b"abc"


def test_only_whole_file_modes(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="mode 'w' or 'wb'"), atomic_writer(tmp_path / "x", "a"):
        pass


def test_sha256_file_reads_in_chunks_and_agrees_with_one_read(tmp_path: Path, shared_data: Path) -> None:
    structure = sorted((shared_data / "cath" / "dompdb").iterdir())[0].read_bytes()
    big = tmp_path / "big.pdb"
    big.write_bytes(structure * (2 * CHUNK_BYTES // len(structure) + 3))  # spans three chunks
    assert big.stat().st_size > 2 * CHUNK_BYTES
    assert sha256_file(big) == hashlib.sha256(big.read_bytes()).hexdigest()
    empty = tmp_path / "empty"
    empty.write_bytes(b"")
    assert sha256_file(empty) == "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"


def test_results_have_the_permissions_of_a_plain_open(tmp_path: Path) -> None:
    """A report page or checkpoint written for others to read is not made owner-only by the
    temporary file it went through (what ``tempfile.mkstemp`` would do)."""
    import os

    plain = tmp_path / "plain.html"
    plain.write_text("x")
    atomic_write(tmp_path / "index.html", "x")
    mode = (tmp_path / "index.html").stat().st_mode & 0o777
    assert mode == plain.stat().st_mode & 0o777
    old = os.umask(0o022)
    try:
        atomic_write(tmp_path / "shared.html", "x")
    finally:
        os.umask(old)
    assert (tmp_path / "shared.html").stat().st_mode & 0o777 == 0o644
