"""Training-step throughput: steps/s and peak memory of the real training engine.

A step is what ``ptk train`` does per optimizer step (batch on the device, forward + loss under
autocast, backward, the finiteness checks, per-module clipping, AdamW, the LR schedule, EMA), run
through :class:`ptk.models.trainer.Trainer` on real shards cropped to a fixed length.

Defaults (the issue's): the default-size v13 and qFitLatent; on CPU at 64 residues; on CUDA at
125 residues, batch 4, with the achieved model TFLOP/s (forward + backward FLOPs counted by
``torch.utils.flop_counter``) beside the GPU's dense bf16 peak.

    python benchmarks/train_step.py                       # CPU, or CUDA when present
    python benchmarks/train_step.py --versions v13 --device cpu --steps 3 --length 64
    python benchmarks/train_step.py --data shards/cath --qfit-data shards/qfit --json out.json
"""

from __future__ import annotations

import argparse
import json
import resource
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import torch

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared" / "data"

#: Dense bf16 tensor-core peaks (TFLOP/s, no sparsity) from the vendors' datasheets.
GPU_PEAK_BF16_TFLOPS = {
    "H200": 989.0,
    "H100 SXM": 989.0,
    "H100 80GB HBM3": 989.0,
    "H100 PCIe": 756.0,
    "H100 NVL": 835.0,
    "H100": 989.0,
    "A100": 312.0,
    "L40S": 362.0,
    "A10": 125.0,
}


def gpu_peak(name: str) -> float | None:
    for key, value in GPU_PEAK_BF16_TFLOPS.items():
        if key in name:
            return value
    return None


def ingest_default(kind: str, out: Path) -> Path:
    """Ingest the shared structures (``../shared/data``) for the benchmark with the real CLI code."""
    from ptk.pipelines.ingest import run_ingest

    if kind == "cath":
        inputs = [str(SHARED / "cath" / "dompdb")]
    else:
        inputs = [str(SHARED / "qfit" / "qfit_models")]
    run_ingest(kind, inputs, out, scheduler="synchronous")
    return out


class _Fixed(torch.utils.data.Dataset):
    """The chains at least ``length`` long, cropped to exactly ``length``, repeated to ``n``."""

    def __init__(self, dataset: Any, length: int, n: int) -> None:
        keep = [i for i in range(len(dataset)) if int(dataset[i]["length"]) >= length]
        if not keep:
            raise SystemExit(f"no chain of at least {length} residues in the benchmark data")
        self.dataset, self.keep, self.n = dataset, keep, n

    def __len__(self) -> int:
        return self.n

    def __getitem__(self, i: int) -> Any:
        return self.dataset[self.keep[i % len(self.keep)]]


def _flops_per_step(task: Any, model: torch.nn.Module, batch: dict, device: torch.device, amp) -> float:
    from torch.utils.flop_counter import FlopCounterMode

    model.train()
    counter = FlopCounterMode(display=False)
    with counter, amp():
        loss, _ = task.loss(model, batch, epoch=1, step=0, training=True)
    with counter:
        loss.float().backward()
    model.zero_grad(set_to_none=True)
    return float(counter.get_total_flops())


def bench(
    version: str,
    data: Path,
    *,
    size: str,
    length: int,
    batch: int,
    steps: int,
    warmup: int,
    device: torch.device,
) -> dict[str, Any]:
    from ptk.models.tasks import get_task
    from ptk.models.trainer import Trainer, to_device

    overrides = {
        "batch_size": batch,
        "grad_accum": 1,
        "max_length": length,
        "progress": False,
        "sample_every": 0,
    }
    task = get_task(version, size, overrides)
    cfg = task.train
    source = task.dataset(data, max_length=length, crop="first", seed=0)
    torch.manual_seed(0)
    model = task.build_model()
    n_params = sum(p.numel() for p in model.parameters())
    with tempfile.TemporaryDirectory() as tmp:
        warm = Trainer(task, model, cfg, tmp, _Fixed(source, length, warmup * batch), None, device)
        warm._train_epoch(1)  # allocator, kernels, autotuning
        trainer = Trainer(task, warm.model, cfg, tmp, _Fixed(source, length, steps * batch), None, device)
        if device.type == "cuda":
            torch.cuda.synchronize()
            torch.cuda.reset_peak_memory_stats()
        start = time.perf_counter()
        trainer._train_epoch(1)
        if device.type == "cuda":
            torch.cuda.synchronize()
        seconds = time.perf_counter() - start
        done = trainer.global_step
        result: dict[str, Any] = {
            "version": version,
            "size": size,
            "params": n_params,
            "device": str(device) if device.type == "cpu" else torch.cuda.get_device_name(device),
            "length": length,
            "batch": batch,
            "steps": done,
            "seconds": round(seconds, 3),
            "steps_per_s": round(done / seconds, 4),
            "residues_per_s": round(done * batch * length / seconds, 1),
            "amp": str(trainer.amp_dtype).replace("torch.", "") if trainer.amp_dtype else "fp32",
        }
        if device.type == "cuda":
            result["peak_mem_gib"] = round(torch.cuda.max_memory_allocated(device) / 2**30, 3)
            example = to_device(task.collate([source[i] for i in trainer.train_set.keep[:batch]]), device)
            flops = _flops_per_step(task, trainer.model, example, device, trainer._autocast)
            achieved = flops * done / seconds / 1e12
            peak = gpu_peak(result["device"])
            result["tflop_per_step"] = round(flops / 1e12, 4)
            result["achieved_tflops"] = round(achieved, 2)
            result["peak_bf16_tflops"] = peak
            result["mfu"] = round(achieved / peak, 4) if peak else None
        else:
            # ru_maxrss is KiB on Linux: the process's peak resident set (model, optimizer, activations)
            result["peak_rss_gib"] = round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20, 3)
    return result


def main(argv: list[str] | None = None) -> list[dict[str, Any]]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--versions", default="v13,qfitlatent")
    parser.add_argument("--size", default="default", choices=["default", "tiny"])
    parser.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])
    parser.add_argument("--length", type=int, default=None, help="residues (default: 64 CPU, 125 CUDA)")
    parser.add_argument("--batch", type=int, default=None, help="batch (default: 4; qfitlatent: 1 on CPU)")
    parser.add_argument("--steps", type=int, default=None, help="timed steps (default: 5 CPU, 20 CUDA)")
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument(
        "--data", type=Path, default=None, help="cath shards (default: ingest ../shared/data)"
    )
    parser.add_argument(
        "--qfit-data", type=Path, default=None, help="qfit shards (default: ingest ../shared/data)"
    )
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args(argv)

    if args.threads:
        torch.set_num_threads(args.threads)
    cuda = args.device == "cuda" or (args.device == "auto" and torch.cuda.is_available())
    device = torch.device("cuda", 0) if cuda else torch.device("cpu")
    length = args.length or (125 if cuda else 64)
    steps = args.steps or (20 if cuda else 5)
    results = []
    with tempfile.TemporaryDirectory() as tmp:
        for version in [v.strip() for v in args.versions.split(",") if v.strip()]:
            qfit = version == "qfitlatent"
            data = args.qfit_data if qfit else args.data
            if data is None:
                data = ingest_default("qfit" if qfit else "cath", Path(tmp) / ("qfit" if qfit else "cath"))
                if qfit:
                    args.qfit_data = data
                else:
                    args.data = data
            batch = args.batch or (1 if qfit and not cuda else 4)
            result = bench(
                version, data, size=args.size, length=length, batch=batch, steps=steps,
                warmup=args.warmup, device=device,
            )  # fmt: skip
            print(json.dumps(result), flush=True)
            results.append(result)
    if args.json:
        args.json.write_text(json.dumps(results, indent=2) + "\n")
    return results


if __name__ == "__main__":
    sys.exit(0 if main() else 1)
