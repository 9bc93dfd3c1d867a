"""Does the data loader keep up? Loader-only batches/s of the shard datasets against the training
step rate, on CPU. Target: the loader is at least 10x faster than a training step, so it costs
the training loop under 10% even in the trainer's default single-process loading
(``num_workers=0``).

The loader pass is exactly what ``ptk train`` iterates: ``CathDataset``/``QfitDataset`` with
random crops (``set_epoch`` per epoch), a shuffling ``DistributedSampler`` and
``collate_cath``/``collate_qfit``, batch 4 (qfit: 1) at 64 residues. The step rate is measured by
``benchmarks/train_step.py``'s :func:`bench` (default v13 and qFitLatent), or given.

    python benchmarks/loader.py
    python benchmarks/loader.py --data shards/cath --qfit-data shards/qfit --epochs 20
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from train_step import bench, ingest_default  # noqa: E402


def loader_rate(kind: str, data: Path, *, batch: int, length: int, epochs: int) -> dict[str, Any]:
    from torch.utils.data import DataLoader, DistributedSampler

    from ptk import shards

    cls, collate = (shards.QfitDataset, shards.collate_qfit) if kind == "qfit" else (
        shards.CathDataset, shards.collate_cath
    )  # fmt: skip
    dataset = cls(str(data), max_length=length, crop="random", seed=0)
    sampler = DistributedSampler(dataset, num_replicas=1, rank=0, shuffle=True, seed=0)
    loader = DataLoader(dataset, batch_size=batch, sampler=sampler, collate_fn=collate, num_workers=0)
    n_batches = n_chains = 0
    start = time.perf_counter()
    for epoch in range(epochs):
        sampler.set_epoch(epoch)
        dataset.set_epoch(epoch)
        for b in loader:
            n_batches += 1
            n_chains += len(b["id"])
    seconds = time.perf_counter() - start
    return {
        "kind": kind,
        "chains": len(dataset),
        "batch": batch,
        "length": length,
        "batches": n_batches,
        "seconds": round(seconds, 3),
        "batches_per_s": round(n_batches / seconds, 2),
        "chains_per_s": round(n_chains / seconds, 1),
    }


def main(argv: list[str] | None = None) -> list[dict[str, Any]]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--data", type=Path, default=None, help="cath shards (default: ingest ../shared/data)"
    )
    parser.add_argument(
        "--qfit-data", type=Path, default=None, help="qfit shards (default: ingest ../shared/data)"
    )
    parser.add_argument("--length", type=int, default=64)
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--versions", default="v13,qfitlatent", help="step rates to compare against")
    parser.add_argument("--size", default="default", choices=["default", "tiny"])
    parser.add_argument("--steps", type=int, default=3)
    parser.add_argument("--step-rate", type=float, default=None, help="skip measuring: steps/s to compare")
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)

    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        data = {
            "cath": args.data or ingest_default("cath", Path(tmp) / "cath"),
            "qfit": args.qfit_data or ingest_default("qfit", Path(tmp) / "qfit"),
        }
        for version in [v.strip() for v in args.versions.split(",") if v.strip()]:
            kind = "qfit" if version == "qfitlatent" else "cath"
            batch = 1 if kind == "qfit" else 4
            load = loader_rate(kind, data[kind], batch=batch, length=args.length, epochs=args.epochs)
            if args.step_rate is not None:
                step = {"steps_per_s": args.step_rate, "version": version}
            else:
                step = bench(
                    version, data[kind], size=args.size, length=args.length, batch=batch, steps=args.steps,
                    warmup=1, device=torch.device("cpu"),
                )  # fmt: skip
            ratio = load["batches_per_s"] / step["steps_per_s"]
            row = {
                **load,
                "version": version,
                "train_steps_per_s": step["steps_per_s"],
                "loader_over_step": round(ratio, 1),
                "ok_10x": ratio >= 10.0,
            }
            print(json.dumps(row), flush=True)
            rows.append(row)
    if args.json:
        args.json.write_text(json.dumps(rows, indent=2) + "\n")
    return rows


if __name__ == "__main__":
    results = main()
    sys.exit(0 if results and all(r["ok_10x"] for r in results) else 1)
