"""``ptk eval`` and ``ptk plot`` as a user runs them: real files in, tables and PNGs out, every
unusable pair a row with its reason."""

from __future__ import annotations

import gzip
import json
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from ptk.pipelines.cli import main

PAIRS = ("1a1hA01_noise1.5", "1au7A02_hinge30", "2j7jA03_noise0.5")


@pytest.fixture(scope="module")
def reference(shared_data: Path) -> tuple[Path, dict]:
    folder = shared_data / "eval_reference"
    if not (folder / "reference.json").is_file():
        pytest.skip("eval_reference not found")
    return folder, json.loads((folder / "reference.json").read_text())


@pytest.fixture()
def folders(reference, tmp_path: Path) -> tuple[Path, Path]:
    """pred/ and ref/ with three good pairs in mixed formats, plus every kind of bad pair."""
    source, _ = reference
    pred, ref = tmp_path / "pred", tmp_path / "ref"
    pred.mkdir()
    ref.mkdir()
    for i, name in enumerate(PAIRS):
        shutil.copy(source / "pred" / f"{name}.pdb.gz", pred / f"{name}.pdb.gz")
        if i == 0:  # plain PDB on one side, gzipped on the other
            (ref / f"{name}.pdb").write_bytes(
                gzip.decompress((source / "ref" / f"{name}.pdb.gz").read_bytes())
            )
        else:
            shutil.copy(source / "ref" / f"{name}.pdb.gz", ref / f"{name}.pdb.gz")
    shutil.copy(source / "pred" / "1a04A02_noise0.5.pdb.gz", pred / "only_pred.pdb.gz")  # no partner
    shutil.copy(source / "ref" / "1a04A02_noise0.5.pdb.gz", ref / "only_ref.pdb.gz")  # no partner
    (pred / "broken.pdb").write_text("this is not a structure\n")
    shutil.copy(source / "ref" / "1a04A02_noise0.5.pdb.gz", ref / "broken.pdb.gz")
    # renumbered: no residue number in common with its reference
    text = gzip.decompress((source / "pred" / "1fseB00_noise0.5.pdb.gz").read_bytes()).decode()
    lines = [line[:22] + f"{int(line[22:26]) + 5000:4d}"[-4:] + line[26:] if line.startswith("ATOM") else line
             for line in text.splitlines()]  # fmt: skip
    (pred / "renumbered.pdb").write_text("\n".join(lines) + "\n")
    shutil.copy(source / "ref" / "1fseB00_noise0.5.pdb.gz", ref / "renumbered.pdb.gz")
    (pred / "notes.csv").write_text("not,a,structure\n")  # tables next to the samples are ignored
    (pred / "ref").mkdir()  # so are folders
    return pred, ref


def test_eval_writes_one_row_per_pair_with_reasons(folders, reference, tmp_path: Path, capsys) -> None:
    pred, ref = folders
    _, values = reference
    out = tmp_path / "scores.csv"
    main(["eval", "--pred", str(pred), "--ref", str(ref), "--out", str(out)])
    frame = pd.read_csv(out).set_index("name")
    assert list(frame.columns) == [
        "n_common",
        "ref_length",
        "rmsd",
        "tm",
        "gdt_ts",
        "gdt_ha",
        "lddt",
        "error",
    ]
    assert sorted(frame.index) == sorted([*PAIRS, "only_pred", "only_ref", "broken", "renumbered"])
    for name in PAIRS:
        row = frame.loc[name]
        assert pd.isna(row["error"])
        assert row["tm"] == pytest.approx(values[name]["tm"], abs=1e-4)
        assert row["gdt_ts"] == pytest.approx(values[name]["gdt_ts"], abs=1e-4)
        assert row["rmsd"] == pytest.approx(values[name]["rmsd"], abs=1e-3)
        assert row["n_common"] == values[name]["n_common"]
        assert 0 < row["lddt"] <= 1
    assert "no reference named only_pred" in frame.loc["only_pred", "error"]
    assert "no prediction named only_ref" in frame.loc["only_ref", "error"]
    assert "not a PDB or mmCIF file" in frame.loc["broken", "error"]
    assert "no common residues" in frame.loc["renumbered", "error"]
    assert frame.loc[["only_pred", "broken", "renumbered"], "tm"].isna().all()
    printed = capsys.readouterr()
    assert "3 of 7 pairs scored" in printed.out
    assert "tm " in printed.out and "median" in printed.out
    assert "not scored: broken" in printed.err


def test_eval_parquet_with_tm_align(folders, tmp_path: Path) -> None:
    pred, ref = folders
    out = tmp_path / "scores.parquet"
    main(["eval", "--pred", str(pred), "--ref", str(ref), "--out", str(out), "--align"])
    frame = pd.read_parquet(out).set_index("name")
    assert "tm_align" in frame.columns
    good = frame.loc[list(PAIRS)]
    assert good["tm_align"].between(0.2, 1.0).all()
    # TM-align finds its own residue correspondence: at least as good as the numbered one up
    # to its heuristics, here within 0.05
    assert (good["tm_align"] >= good["tm"] - 0.05).all()


def test_eval_refuses_bad_options(folders, tmp_path: Path, capsys) -> None:
    pred, ref = folders
    with pytest.raises(SystemExit) as exc:
        main(["eval", "--pred", str(pred), "--ref", str(ref), "--out", str(tmp_path / "scores.txt")])
    assert exc.value.code == 1
    assert ".csv or .parquet" in capsys.readouterr().err
    if not torch.cuda.is_available():
        with pytest.raises(SystemExit) as exc:
            main(
                [
                    "eval",
                    "--pred",
                    str(pred),
                    "--ref",
                    str(ref),
                    "--out",
                    str(tmp_path / "s.csv"),
                    "--device",
                    "cuda",
                ]
            )
        assert exc.value.code == 1
        assert "no CUDA device" in capsys.readouterr().err
    with pytest.raises(SystemExit) as exc:
        main(
            ["eval", "--pred", str(tmp_path / "missing"), "--ref", str(ref), "--out", str(tmp_path / "s.csv")]
        )
    assert exc.value.code == 2


def test_plot_commands_write_pngs(reference, dompdb_files: list[Path], tmp_path: Path) -> None:
    source, _ = reference
    rama = tmp_path / "rama.png"
    main(
        [
            "plot",
            "rama",
            "--ref",
            str(source / "ref"),
            "--panel",
            f"perturbed={source / 'pred'}",
            "--out",
            str(rama),
        ]
    )
    assert rama.stat().st_size > 10_000

    # a run's samples folder: ref/, ddim/, x0/
    samples = tmp_path / "epoch_001"
    for sub, pattern in (
        ("ref", "ref/*_noise0.5*"),
        ("ddim", "pred/*_noise1.5*"),
        ("x0", "pred/*_noise0.5*"),
    ):
        (samples / sub).mkdir(parents=True)
        for path in sorted(source.glob(pattern))[:5]:
            shutil.copy(path, samples / sub / path.name)
    main(["plot", "rama", "--samples", str(samples), "--out", str(tmp_path / "samples.png")])
    assert (tmp_path / "samples.png").stat().st_size > 10_000

    contacts = tmp_path / "contacts.png"
    pred = source / "pred" / "1o7iB00_noise1.5.pdb.gz"
    main(["plot", "contacts", "--ref", str(source / "ref" / "1o7iB00_noise1.5.pdb.gz"), "--pred", str(pred),
          "--out", str(contacts)])  # fmt: skip
    assert contacts.stat().st_size > 10_000
    probabilities = tmp_path / "prob.npy"
    np.save(probabilities, np.full((114, 114), 0.25))
    main(["plot", "contacts", "--ref", str(source / "ref" / "1o7iB00_noise1.5.pdb.gz"), "--pred",
          str(probabilities), "--out", str(tmp_path / "flat.png")])  # fmt: skip
    assert (tmp_path / "flat.png").is_file()

    run = tmp_path / "run"
    run.mkdir()
    pd.DataFrame({"epoch": [1, 2, 3], "train_loss": [3.0, 2.0, 1.5], "val_loss": [3.2, 2.4, 2.0],
                  "status": ["NEW BEST"] * 3}).to_csv(run / "metrics.csv", index=False)  # fmt: skip
    main(["plot", "losses", str(run), str(run / "metrics.csv"), "--out", str(tmp_path / "losses.png")])
    assert (tmp_path / "losses.png").stat().st_size > 10_000

    chi = tmp_path / "chi.png"
    main(["plot", "chi", "--panel", f"dompdb={dompdb_files[0].parent}", "--out", str(chi)])
    assert chi.stat().st_size > 10_000


def test_plot_refuses_bad_input(tmp_path: Path, capsys) -> None:
    with pytest.raises(SystemExit) as exc:
        main(["plot", "rama", "--out", str(tmp_path / "x.png")])
    assert exc.value.code == 1
    assert "nothing to plot" in capsys.readouterr().err
    with pytest.raises(SystemExit) as exc:
        main(["plot", "rama", "--panel", "no-equals-sign", "--out", str(tmp_path / "x.png")])
    assert exc.value.code == 1
    with pytest.raises(SystemExit) as exc:
        main(["plot", "losses", str(tmp_path), "--out", str(tmp_path / "x.jpg")])
    assert exc.value.code == 1


@pytest.mark.parametrize("where", ["/proc/ptk_scores.csv", "FILE/sub/scores.csv"])
def test_eval_checks_its_output_before_scoring(
    where: str, folders, tmp_path: Path, capsys, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An output that cannot be written is one line before any pair is scored."""
    import ptk.metrics

    pred, ref = folders
    (tmp_path / "FILE").write_text("a file")
    out = where if where.startswith("/") else str(tmp_path / where)
    scored = []
    real = ptk.metrics.evaluate_pairs
    monkeypatch.setattr(ptk.metrics, "evaluate_pairs", lambda *a, **k: scored.append(1) or real(*a, **k))
    with pytest.raises(SystemExit) as exc:
        main(["eval", "--pred", str(pred), "--ref", str(ref), "--out", out])
    assert exc.value.code == 1
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and f"--out {out}" in err and "Traceback" not in err
    assert not scored


def test_structure_stats_secondary_structure_and_long_range_contacts(
    shared_data: Path, tmp_path: Path
) -> None:
    """--structure-stats: helix/strand/coil fractions equal biotite's own P-SEA on the file's Cα
    atoms read by biotite; an ideal α-helix is a helix; a structure scored against itself has
    long-range contact precision and recall 1 and equal fractions; noise lowers them."""
    import biotite.structure as struc
    import biotite.structure.io.pdb as biotite_pdb

    from ptk.metrics import CaTrace, sse_fractions

    shared = shared_data / "eval_reference"
    refs = sorted((shared / "ref").glob("*_noise3.0.pdb.gz"))[:4]
    pred, ref_dir = tmp_path / "pred", tmp_path / "ref"
    pred.mkdir()
    ref_dir.mkdir()
    for path in refs:  # each reference scored against itself, and its 3 Å-noise version against it
        shutil.copy(path, pred / f"self_{path.name}")
        shutil.copy(path, ref_dir / f"self_{path.name}")
        shutil.copy(shared / "pred" / path.name, pred / path.name)
        shutil.copy(path, ref_dir / path.name)
    out = tmp_path / "stats.csv"
    main(["eval", "--pred", str(pred), "--ref", str(ref_dir), "--out", str(out), "--structure-stats"])
    frame = pd.read_csv(out).set_index("name")
    assert frame["error"].isna().all() and len(frame) == 2 * len(refs)

    for path in refs:
        row = frame.loc[f"self_{path.name.removesuffix('.pdb.gz')}"]
        with gzip.open(path, "rt") as handle:
            atoms = biotite_pdb.PDBFile.read(handle).get_structure(model=1)
        ca = atoms[(atoms.atom_name == "CA") & (atoms.chain_id == atoms.chain_id[0]) & ~atoms.hetero]
        labels = struc.annotate_sse(ca)
        labels = labels[np.isin(labels, ["a", "b", "c"])]
        for name, code in (("helix", "a"), ("strand", "b"), ("coil", "c")):
            assert row[f"ref_{name}"] == pytest.approx((labels == code).mean(), abs=1e-9)
            assert row[f"pred_{name}"] == row[f"ref_{name}"]
        noisy = frame.loc[path.name.removesuffix(".pdb.gz")]
        assert noisy["pred_coil"] > noisy["ref_coil"]
        if pd.isna(row["lr_contact_recall"]):  # a domain with no |i-j| >= 24 contact at all
            assert pd.isna(row["lr_contact_precision"])
            continue
        assert row["lr_contact_precision"] == 1.0 and row["lr_contact_recall"] == 1.0
        assert noisy["lr_contact_recall"] < 0.8
    assert frame["lr_contact_recall"].notna().sum() >= 4  # most domains have long-range contacts

    k = np.arange(30)  # an ideal α-helix: 100° a residue, radius 2.3 Å, rise 1.5 Å
    helix = np.stack([2.3 * np.cos(np.radians(100 * k)), 2.3 * np.sin(np.radians(100 * k)), 1.5 * k], axis=1)
    trace = CaTrace(helix, k + 1, np.array([""] * 30), "A" * 30)
    assert sse_fractions(trace)["helix"] >= 0.8


def test_eval_by_cath_class(tmp_path: Path, shared_data: Path, capsys) -> None:
    """--by cath_class --labels SHARDS labels each pair with its domain's CATH class (from the
    shards, which took it from the split file's CATH nodes) and prints one summary row per class;
    the classes agree with the split file read here, and the references' secondary structure
    agrees with them: mainly-alpha domains are more helix than mainly-beta ones, and the reverse
    for strand."""

    source = shared_data / "eval_reference"
    pred, ref = tmp_path / "pred", tmp_path / "ref"
    pred.mkdir()
    ref.mkdir()
    for p in sorted((source / "pred").glob("*_noise0.5.pdb.gz")):  # one pair per domain
        shutil.copy(p, pred / p.name)
        shutil.copy(source / "ref" / p.name, ref / p.name)
    shards_dir = tmp_path / "shards"
    splits = shared_data / "cath" / "chain_set_splits.json"
    main(["ingest", "cath", str(shared_data / "cath" / "dompdb"), "--out", str(shards_dir),
          "--splits", str(splits), "--scheduler", "synchronous"])  # fmt: skip
    out = tmp_path / "scores.csv"
    capsys.readouterr()
    main(["eval", "--pred", str(pred), "--ref", str(ref), "--out", str(out), "--structure-stats",
          "--by", "cath_class", "--labels", str(shards_dir)])  # fmt: skip
    printed = capsys.readouterr().out
    frame = pd.read_csv(out)
    nodes = json.loads(splits.read_text())["cath_nodes"]
    for _, row in frame.iterrows():
        domain = row["name"].split("_", 1)[0]  # 1a04A02 -> chain 1a04.A
        classes = {int(node.split(".")[0]) for node in nodes.get(f"{domain[:4]}.{domain[4]}") or []}
        if len(classes) == 1:  # one class for every domain of the chain: unambiguous
            assert row["cath_class"] == classes.pop(), row["name"]
        else:
            assert pd.isna(row["cath_class"]) or row["cath_class"] in classes, row["name"]
    assert frame["cath_class"].notna().sum() >= 10
    per_class = frame.groupby("cath_class")[["ref_helix", "ref_strand"]].mean()
    assert {1, 2} <= set(per_class.index)
    assert per_class.loc[1, "ref_helix"] > per_class.loc[2, "ref_helix"]
    assert per_class.loc[2, "ref_strand"] > per_class.loc[1, "ref_strand"]
    lines = printed.splitlines()
    for cls, n in frame["cath_class"].value_counts().items():
        assert any(line.startswith(f"{int(cls)} ") and f" {n} " in line for line in lines), (cls, n, printed)
    with pytest.raises(SystemExit) as usage:
        main(["eval", "--pred", str(pred), "--ref", str(ref), "--out", str(out), "--by", "cath_class"])
    assert usage.value.code == 2 and "--labels" in capsys.readouterr().err


def _with_hetatm_mse(source: Path, out: Path, delete: bool = False) -> int:
    """``source`` with its first MET written as HETATM MSE (SD → SE), as most deposited entries
    write selenomethionine (or, ``delete``, with that residue removed); returns its number."""
    import gemmi

    structure = gemmi.read_structure(str(source))
    chain = structure[0][0]
    index = next(i for i, residue in enumerate(chain) if residue.name == "MET")
    number = chain[index].seqid.num
    if delete:
        del chain[index]
    else:
        residue = chain[index]
        residue.name, residue.het_flag = "MSE", "H"
        for atom in residue:
            if atom.name == "SD":
                atom.name, atom.element = "SE", gemmi.Element("Se")
    if out.name.endswith(".cif"):
        structure.setup_entities()
        structure.make_mmcif_document().write_file(str(out))
    else:
        structure.write_pdb(str(out))
    return number


@pytest.mark.parametrize("suffix", [".pdb", ".cif"])
def test_atom_records_only_reads_a_modified_residue_as_the_tmscore_program_does(
    reference, tmp_path: Path, suffix: str, capsys
) -> None:
    """A reference whose Met is written as HETATM MSE. By default ptk reads it as its parent, so
    the pair scores exactly what the TM-score program printed for the unmodified pair;
    ``--atom-records-only`` reads ATOM records only, as the program does: the residue leaves the
    reference, and the pair scores as the same reference with that residue deleted."""
    source, values = reference
    name = "1a04A02_noise1.5"
    pred, modified, deleted = tmp_path / "pred", tmp_path / "modified", tmp_path / "deleted"
    for folder in (pred, modified, deleted):
        folder.mkdir()
    shutil.copy(source / "pred" / f"{name}.pdb.gz", pred / f"{name}.pdb.gz")
    number = _with_hetatm_mse(source / "ref" / f"{name}.pdb.gz", modified / f"{name}{suffix}")
    original = source / "ref" / f"{name}.pdb.gz"
    assert _with_hetatm_mse(original, deleted / f"{name}{suffix}", delete=True) == number
    text = (modified / f"{name}{suffix}").read_text()
    assert "HETATM" in text and "MSE" in text

    def scores(ref: Path, *flags: str) -> pd.Series:
        out = tmp_path / f"{ref.name}{'-'.join(flags)}.csv"
        main(["eval", "--pred", str(pred), "--ref", str(ref), "--out", str(out), *flags])
        return pd.read_csv(out).set_index("name").loc[name]

    expected = values[name]
    default = scores(modified)
    assert pd.isna(default["error"]) and default["n_common"] == expected["n_common"]
    assert default["tm"] == pytest.approx(expected["tm"], abs=1e-4)
    assert default["gdt_ts"] == pytest.approx(expected["gdt_ts"], abs=1e-4)
    program = scores(modified, "--atom-records-only")
    without = scores(deleted)
    assert program["n_common"] == expected["n_common"] - 1
    assert program["ref_length"] == default["ref_length"] - 1
    for metric in ("tm", "rmsd", "gdt_ts", "gdt_ha", "lddt"):
        assert program[metric] == pytest.approx(without[metric], abs=1e-9), metric
    assert program["tm"] != pytest.approx(default["tm"], abs=1e-6)  # the residue counted
    capsys.readouterr()
