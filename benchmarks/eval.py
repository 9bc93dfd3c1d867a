"""Pairs per second: the batched evaluator (the TM-score program's search) vs TM-align (tmtools).

    python benchmarks/eval.py [--data ../shared/data] [--pairs 300] [--threads 1,2]
                              [--backend native|torch] [--device cpu|cuda] [--seed-step 1]

The pairs: the CATH domains of ``cath/dompdb`` with 100–300 residues, each against itself after a
known perturbation (the ``eval_reference`` pairs of those domains, then Gaussian per-residue noise
σ ∈ {0.5, 1, 1.5, 2, 3} Å combined with a hinge of 0–75° about the middle Cα, and a random rigid
move), cycled until ``--pairs``. Both sides get the same Cα coordinates in memory, in the same
run: ptk scores all pairs with one :func:`ptk.metrics.score_batch` call (TM, GDT-TS/HA, RMSD and
lDDT), tmtools runs ``tm_align`` pair by pair (TM only, one thread). ptk runs once per entry of
``--threads`` (default 1 — tmtools' one thread — and every core); ``--backend`` picks the search
(default: the compiled kernel on CPU, torch on CUDA; ``torch`` times the batched tensor path).
Prints each rate and its ratio to tmtools', the figure of issue 4. ``--seed-step 8`` times the
approximate search instead (seeds slid 8 residues at a time).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import time
from pathlib import Path

import numpy as np
import torch

from ptk.metrics import read_ca, score_batch, search_backend, superposition_search

REPO = Path(__file__).resolve().parents[1]


def _rotation(axis: np.ndarray, angle: float) -> np.ndarray:
    axis = axis / np.linalg.norm(axis)
    k = np.array([[0, -axis[2], axis[1]], [axis[2], 0, -axis[0]], [-axis[1], axis[0], 0]])
    return np.eye(3) + math.sin(angle) * k + (1 - math.cos(angle)) * (k @ k)


def perturb(ca: np.ndarray, sigma: float, hinge_deg: float, rng: np.random.Generator) -> np.ndarray:
    """Hinge (residues after the middle rotated about a random axis through the middle Cα),
    per-residue Gaussian noise, then a random rigid-body move."""
    out = ca.copy()
    mid = len(out) // 2
    if hinge_deg:
        rot = _rotation(rng.normal(size=3), math.radians(hinge_deg))
        out[mid:] = (out[mid:] - out[mid]) @ rot.T + out[mid]
    out = out + rng.normal(scale=sigma, size=out.shape)
    q, _ = np.linalg.qr(rng.normal(size=(3, 3)))
    q *= np.sign(np.linalg.det(q))
    return out @ q.T + rng.normal(scale=20.0, size=3)


def build_pairs(data: Path, count: int, seed: int = 0) -> list[tuple[str, np.ndarray, np.ndarray, str]]:
    """(name, pred Cα, ref Cα, sequence) for ``count`` pairs of 100–300 residues."""
    rng = np.random.default_rng(seed)
    domains = {}
    for path in sorted((data / "cath" / "dompdb").iterdir()):
        trace = read_ca(path)
        if 100 <= len(trace) <= 300:
            domains[path.name] = trace
    pairs = []
    reference = data / "eval_reference"
    if (reference / "reference.json").is_file():
        for name in sorted(json.loads((reference / "reference.json").read_text())):
            domain = name.split("_")[0]
            if domain in domains:
                pred = read_ca(reference / "pred" / f"{name}.pdb.gz")
                ref = read_ca(reference / "ref" / f"{name}.pdb.gz")
                if len(pred) == len(ref):
                    pairs.append((name, pred.coords, ref.coords, ref.sequence))
    settings = [(s, h) for s in (0.5, 1.0, 1.5, 2.0, 3.0) for h in (0.0, 20.0, 45.0, 75.0)]
    i = 0
    while len(pairs) < count:
        name, trace = list(domains.items())[i % len(domains)]
        sigma, hinge = settings[(i // len(domains)) % len(settings)]
        pred = perturb(trace.coords, sigma, hinge, rng)
        pairs.append((f"{name}_s{sigma}_h{hinge:g}_{i}", pred, trace.coords, trace.sequence))
        i += 1
    return pairs[:count]


def run_ptk(pairs, device: torch.device, seed_step: int = 1) -> tuple[float, dict[str, torch.Tensor]]:
    n = max(len(p[1]) for p in pairs)
    pred = torch.full((len(pairs), n, 3), math.nan, dtype=torch.float64)
    ref = torch.full((len(pairs), n, 3), math.nan, dtype=torch.float64)
    mask = torch.zeros(len(pairs), n, dtype=torch.bool)
    for i, (_, p, r, _) in enumerate(pairs):
        pred[i, : len(p)] = torch.from_numpy(p)
        ref[i, : len(r)] = torch.from_numpy(r)
        mask[i, : len(p)] = True
    pred, ref, mask = pred.to(device), ref.to(device), mask.to(device)
    if device.type == "cuda":
        torch.cuda.synchronize()
    start = time.perf_counter()
    if seed_step == 1:
        scores = score_batch(pred, ref, mask)
    else:  # the approximate search: TM and GDT only
        scores = superposition_search(pred, ref, mask, seed_step=seed_step)
    if device.type == "cuda":
        torch.cuda.synchronize()
    return time.perf_counter() - start, {k: v.cpu() for k, v in scores.items()}


def run_tmtools(pairs) -> tuple[float, list[float]]:
    from tmtools import tm_align

    start = time.perf_counter()
    tms = [
        tm_align(np.ascontiguousarray(p), np.ascontiguousarray(r), s, s).tm_norm_chain2
        for _, p, r, s in pairs
    ]
    return time.perf_counter() - start, tms


def main(argv: list[str] | None = None) -> dict[str, float]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", type=Path, default=REPO.parent / "shared" / "data")
    parser.add_argument("--pairs", type=int, default=300)
    parser.add_argument(
        "--threads", default=f"1,{os.cpu_count() or 1}", help="comma-separated thread counts for ptk"
    )
    parser.add_argument("--backend", choices=("native", "torch"), default=None, help="default: per device")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--seed-step", type=int, default=1, help="1: the exact search; >1: approximate")
    args = parser.parse_args(argv)
    if args.backend:
        os.environ["PTK_TMSEARCH"] = args.backend  # score_batch takes the default backend
    device = torch.device(args.device)
    backend = search_backend(device)
    threads = sorted({int(t) for t in args.threads.split(",")})
    pairs = build_pairs(args.data, args.pairs, args.seed)
    lengths = [len(p[2]) for p in pairs]
    print(f"{len(pairs)} pairs, {min(lengths)}-{max(lengths)} residues (mean {np.mean(lengths):.0f})")
    if device.type == "cuda":  # warm-up (CUDA context, kernels)
        run_ptk(pairs[:4], device)
    tm_time, tm_align_scores = run_tmtools(pairs)
    tm_rate = len(pairs) / tm_time
    print(f"{'tmtools tm_align (1 thread):':<44}{tm_time:8.2f} s  {tm_rate:9.1f} pairs/s")
    what = "score_batch" if args.seed_step == 1 else f"search step {args.seed_step}"
    figures: dict[str, float] = {"tmtools_pairs_per_s": tm_rate}
    for count in threads:
        torch.set_num_threads(count)
        ptk_time, scores = run_ptk(pairs, device, args.seed_step)
        rate = len(pairs) / ptk_time
        label = f"ptk {what} ({args.device} {backend}, {count} thread(s)):"
        print(f"{label:<44}{ptk_time:8.2f} s  {rate:9.1f} pairs/s   ratio {rate / tm_rate:6.2f}x")
        figures[f"ptk_pairs_per_s_{count}"] = rate
        figures[f"ratio_{count}"] = rate / tm_rate
    diff = np.abs(scores["tm"].numpy() - np.asarray(tm_align_scores))
    print(f"mean TM ptk {scores['tm'].mean():.4f} vs TM-align {np.mean(tm_align_scores):.4f} "
          f"(median |diff| {np.median(diff):.4f}; TM-align may realign residues)")  # fmt: skip
    return figures


if __name__ == "__main__":
    main()
