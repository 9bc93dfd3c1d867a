"""Structure reading on the real files of ../shared/data, against gemmi's and biotite's own views."""

from __future__ import annotations

import gzip
import shutil
import warnings
from pathlib import Path

import biotite.structure as bs
import biotite.structure.io.pdb as biotite_pdb
import numpy as np
import pytest

from ptk.errors import PtkError, StructureError
from ptk.residues import ATOM37_INDEX, RESTYPES_3
from ptk.structure import parent_residue, read_chains


def test_dompdb_files_without_extension_read_with_ids_from_the_name(dompdb_files: list[Path]) -> None:
    assert len(dompdb_files) == 20
    for path in dompdb_files:
        parsed = read_chains(path)
        assert len(parsed.chains) == 1
        chain = parsed.chains[0]
        assert chain.chain_id == f"{path.name[:4]}.{path.name[4]}"  # 1c0pA01 -> 1c0p.A
        assert len(chain.sequence) == len(chain) > 20
        assert len(parsed.sha256) == 64


def test_sequence_and_coordinates_match_biotite(dompdb_files: list[Path]) -> None:
    for path in dompdb_files:
        chain = read_chains(path).chains[0]
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            atoms = biotite_pdb.PDBFile.read(path).get_structure(model=1, altloc="first")
        atoms = atoms[bs.filter_amino_acids(atoms) & (atoms.element != "H")]
        res_ids, res_names = bs.get_residues(atoms)
        np.testing.assert_array_equal(chain.resnum, res_ids)
        assert list(chain.resname) == list(res_names)
        ca = atoms[atoms.atom_name == "CA"]
        np.testing.assert_allclose(chain.positions[chain.mask[:, 1], 1], ca.coord, atol=1e-3)


def test_hydrogens_are_dropped(shared_data: Path) -> None:
    chain = read_chains(shared_data / "cath" / "dompdb" / "1ufmA00").chains[0]  # 605 H atoms
    heavy = sum(
        1
        for line in (shared_data / "cath" / "dompdb" / "1ufmA00").read_text().splitlines()
        if line.startswith("ATOM") and not line[12:16].strip().startswith("H")
    )
    assert chain.mask.sum() == heavy


def test_waters_written_as_atom_records_are_still_waters(shared_data: Path) -> None:
    path = shared_data / "qfit" / "qfit_models" / "3K0N_multiconformer_model2.pdb"
    assert any(line.startswith("ATOM") and line[17:20] == "HOH" for line in path.read_text().splitlines())
    parsed = read_chains(path)
    assert [c.name for c in parsed.chains] == ["A"]
    assert "HOH" not in set(parsed.chains[0].resname)
    assert len(parsed.chains[0]) == 163


def test_mmcif_gz_and_pdb_give_the_same_chain(shared_data: Path, tmp_path: Path) -> None:
    cif = read_chains(shared_data / "qfit" / "inputs" / "3K0N.cif.gz").chains[0]
    assert cif.chain_id == "3k0n.A"
    pdb_path = shared_data / "cath" / "dompdb" / "1a04A02"
    gz = tmp_path / "1a04A02.pdb.gz"
    with open(pdb_path, "rb") as src, gzip.open(gz, "wb") as dst:
        shutil.copyfileobj(src, dst)
    plain, zipped = read_chains(pdb_path).chains[0], read_chains(gz).chains[0]
    np.testing.assert_array_equal(plain.positions, zipped.positions)


def test_selenomethionine_maps_to_methionine_with_its_selenium_as_sd(shared_data: Path) -> None:
    assert parent_residue("MSE") == "MET"
    assert parent_residue("SEP") == "SER"  # phosphoserine, from the component tables
    assert parent_residue("HOH") is None and parent_residue("NAG") is None
    chain = read_chains(shared_data / "qfit" / "deposited" / "3SB3.pdb").chains[0]
    (index,) = np.nonzero(chain.resname == "MSE")
    assert len(index) == 1
    i = index[0]
    assert RESTYPES_3[chain.aatype[i]] == "MET"
    assert chain.mask[i, ATOM37_INDEX["SD"]]
    assert chain.sequence[i] == "M"


def test_insertion_codes_are_kept(dompdb_files: list[Path], tmp_path: Path) -> None:
    lines = dompdb_files[0].read_text().splitlines()
    atom_lines = [line for line in lines if line.startswith("ATOM")]
    first_res = atom_lines[0][22:27]
    second_res = next(line[22:27] for line in atom_lines if line[22:27] != first_res)
    # Renumber the second residue as an insertion after the first: same number, code A.
    edited = [
        line[:22] + first_res[:4] + "A" + line[27:]
        if line.startswith("ATOM") and line[22:27] == second_res
        else line
        for line in lines
    ]
    path = tmp_path / "icode.pdb"
    path.write_text("\n".join(edited) + "\n")
    chain = read_chains(path).chains[0]
    assert chain.resnum[0] == chain.resnum[1]
    assert chain.icode[0] == "" and chain.icode[1] == "A"
    assert len(chain) == len(read_chains(dompdb_files[0]).chains[0])


def test_multichain_file_gives_one_chain_per_protein_chain(shared_data: Path) -> None:
    parsed = read_chains(shared_data / "qfit" / "qfit_models" / "Test_relabel.pdb")
    assert [c.name for c in parsed.chains] == ["A", "B", "C"]


def test_altloc_conformers_carry_blank_atoms_and_occupancies(shared_data: Path) -> None:
    path = shared_data / "qfit" / "fragments" / "AKA_multiconf.pdb"
    chain = read_chains(path, altlocs=True).chains[0]
    conf = chain.conformers
    assert conf is not None
    lys = 1
    assert list(conf.labels[lys]) == ["A", "B", "C"]
    # Independent read of the altloc records.
    records = [line for line in path.read_text().splitlines() if line.startswith("ATOM")]
    for k, label in enumerate("ABC"):
        nz = [line for line in records if line[16] == label and line[12:16].strip() == "NZ"]
        assert len(nz) == 1
        xyz = [float(nz[0][30:38]), float(nz[0][38:46]), float(nz[0][46:54])]
        np.testing.assert_allclose(conf.positions[lys, k, ATOM37_INDEX["NZ"]], xyz, atol=1e-3)
        assert conf.atom_occupancy[lys, k, ATOM37_INDEX["NZ"]] == pytest.approx(float(nz[0][54:60]), abs=1e-4)
        assert conf.named_mask[lys, k, ATOM37_INDEX["NZ"]]
    # Residues without altlocs: one blank conformer.
    assert conf.n_conformers.tolist() == [1, 3, 1]


def test_read_chains_without_altlocs_has_no_conformers(dompdb_files: list[Path]) -> None:
    assert read_chains(dompdb_files[0]).chains[0].conformers is None


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (b"", "empty file"),
        (b"   \n\n", "empty file"),
        (b"\x00\x01\x02binary\xff" * 50, "binary"),
        (b"just some text\nnot a structure\n", "not a PDB or mmCIF"),
        (gzip.compress(b"ATOM      1  N   ALA A   1      0.0 0.0 0.0")[:15], "gzip"),
        (
            b"HETATM    1  O   HOH A   1      11.104   6.134  -6.504  1.00 20.00           O\nEND\n",
            "no protein chain",
        ),
    ],
    ids=["empty", "blank", "binary", "text", "truncated-gzip", "waters-only"],
)
def test_bad_files_raise_structure_error_naming_the_file(
    tmp_path: Path, content: bytes, message: str
) -> None:
    path = tmp_path / "bad_input.pdb"
    path.write_bytes(content)
    with pytest.raises(StructureError, match=message) as info:
        read_chains(path)
    assert str(path) in str(info.value)
    assert isinstance(info.value, PtkError)


def test_missing_path_and_directory_raise_structure_error(tmp_path: Path) -> None:
    with pytest.raises(StructureError, match="no such file"):
        read_chains(tmp_path / "nope.pdb")
    with pytest.raises(StructureError, match="directory"):
        read_chains(tmp_path)


def test_ligand_only_file_has_no_protein(shared_data: Path, tmp_path: Path) -> None:
    lines = (shared_data / "qfit" / "deposited" / "4MS6.pdb").read_text().splitlines()
    ligand = [line for line in lines if line.startswith("HETATM") and line[17:20] != "HOH"]
    assert ligand
    path = tmp_path / "ligand.pdb"
    path.write_text("\n".join(ligand) + "\nEND\n")
    with pytest.raises(StructureError, match="no protein chain"):
        read_chains(path)


def test_what_counts_as_a_structure_file_name() -> None:
    """One definition (ptk.structure) for ingest's discovery and eval's pairing: PDB and mmCIF
    extensions in any case, each with or without .gz; nothing else."""
    from ptk.structure import has_structure_suffix, structure_name

    for name in ("a.pdb", "a.ENT", "a.cif", "a.mmcif", "a.pdbx", "a.pdb.gz", "A.CIF.GZ", "d/1abc.mmcif.gz"):
        assert has_structure_suffix(name), name
    for name in ("a.json", "a.gz", "a.pdb.bak", "1a04A02", "a.txt", "pdb"):
        assert not has_structure_suffix(name), name
    assert structure_name("x.pdbx.gz") == "x" and structure_name(".pdb") == ".pdb"
