"""A ptk-trained model learns: the memorisation check of ``benchmarks/learning.py`` for the stage-1
ContactClassifier and v13, through the ``ptk`` CLI on real chains (slow: a few CPU minutes).

This is the regression net of the diffusion and sampling paths: ``ptk ingest`` three whole CATH
domains of ``../shared/data``, ``ptk train`` the ContactClassifier and then v13 on its frozen
encoder (both at the ``small`` size, validation on the training chains), ``ptk sample`` with the
version's eta and guidance, ``ptk eval``. The targets are the benchmark's: median DDIM TM-score
>= 0.7 against the memorised structures, and stage-1 top-L long-range precision >= 0.9 of what
each chain allows. Before the fixes of the frame initialisation and self-conditioning, the same
recipe sampled TM 0.2-0.3 (``docs/learning.md``).
"""

from __future__ import annotations

import csv
import statistics
from pathlib import Path

import pytest
import torch

from ptk.pipelines.cli import main

CHAINS = ("3uljB00", "4gs3A00", "1r7aA02")  # 90, 90 and 81 residues
STAGE1_EPOCHS = 60
V13_EPOCHS = 300


@pytest.mark.slow
def test_stage1_then_v13_memorise_three_chains(shared_data: Path, tmp_path: Path) -> None:
    shards, runs = tmp_path / "shards", tmp_path / "runs"
    files = [str(shared_data / "cath" / "dompdb" / name) for name in CHAINS]
    main(["ingest", "cath", *files, "--out", str(shards), "--scheduler", "synchronous"])
    common = [
        "--size",
        "small",
        "--data",
        str(shards),
        "--val-data",
        str(shards),
        "--device",
        "cpu",
        "--set",
        f"batch_size={len(CHAINS)}",
        "--set",
        "patience=0",
        "--set",
        "progress=false",
    ]
    main(
        [
            "train",
            "--version",
            "contact-classifier",
            "--out",
            str(runs / "contact-classifier"),
            "--epochs",
            str(STAGE1_EPOCHS),
            *common,
        ]
    )
    main(
        [
            "train",
            "--version",
            "v13",
            "--out",
            str(runs / "v13"),
            "--epochs",
            str(V13_EPOCHS),
            "--set",
            "sample_every=0",
            *common,
        ]
    )
    assert "frozen encoder from" in (runs / "v13" / "train.log").read_text()

    # stage 1: top-L long-range precision against the truth, over what each chain allows
    from ptk.metrics import contact_metrics
    from ptk.pipelines.sample import load_run_model

    task, model, _ = load_run_model(runs / "contact-classifier", "last")
    dataset = task.dataset(shards, max_length=1024, crop="first", seed=0)
    batch = task.collate([dataset[i] for i in range(len(dataset))])
    with torch.no_grad():
        prob = torch.sigmoid(model(batch)["contact_logits"]).double()
    ca = batch["backbone"][:, :, 1].double()
    scores = contact_metrics(prob, ca, batch["residue_mask"].bool())
    ratio = scores["top_l_long"] / scores["top_l_ceiling"]
    assert bool((ratio >= 0.9).all()), (scores["top_l_long"], scores["top_l_ceiling"])

    # v13: DDIM samples of the memorised sequences (the version's eta and guidance), scored by
    # ptk eval against the references the sampler wrote beside them
    samples = tmp_path / "samples"
    main(
        [
            "sample",
            "--run",
            str(runs / "v13"),
            "--checkpoint",
            "last",
            "--data",
            str(shards),
            "--out",
            str(samples),
            "--steps",
            "50",
            "--device",
            "cpu",
        ]
    )
    main(
        ["eval", "--pred", str(samples), "--ref", str(samples / "ref"), "--out", str(tmp_path / "scores.csv")]
    )
    with open(tmp_path / "scores.csv", newline="") as handle:
        rows = list(csv.DictReader(handle))
    tms = [float(r["tm"]) for r in rows]
    assert len(tms) == len(CHAINS) and statistics.median(tms) >= 0.7, tms
