"""Does a ptk-trained model learn? Memorisation and small-scale generalisation, per family.

Every model is trained through the real engine (:func:`ptk.pipelines.train.run_training`, the
code path of ``ptk train``: the same Trainer, losses, EMA and LR schedules) on shards written by
the real ingest, then judged with ptk's own evaluators against simple baselines:

1. **Memorisation** (train set = evaluation set; it shows the whole loop is coherent):

   - Mini-Fold (v13 by default; ``--versions`` for others): the stage-1 ContactClassifier is
     trained first, then the version on its frozen encoder (the page's order). DDIM samples
     (50 steps, the version's eta and guidance) conditioned on the training sequences, whole
     chains. Target: median TM-score >= 0.7 against the training structures. Baselines: the
     same sampler on the untrained model, and the one-step x0 prediction from t = 100.
   - ContactClassifier: top-L long-range (|i - j| >= 24) precision on its training chains.
     Target >= 0.9 of what the chain allows (a chain with fewer than L long-range contacts
     caps the top-L precision at n_contacts / L; the cap is printed beside it).
   - qFitLatent and the Pallatom refiner: ``benchmarks/learning_qfit.py``.

2. **Generalisation at small scale** (chains of ``../shared/data`` never trained on; reported as
   measured): ContactClassifier top-L/5 long-range precision against a sequence-separation
   baseline (contact probability as a function of |i - j| alone, fitted on the training
   chains); Mini-Fold DDIM TM on held-out sequences against the untrained model's; qFitLatent
   held-out NLL against a per-residue-type von Mises mixture.

    python benchmarks/learning.py --quick                # memorisation, every family
    python benchmarks/learning.py                        # both parts, every family
    python benchmarks/learning.py --versions v13 v14 --out /tmp/learning
    python benchmarks/learning.py --chains a.pdb b.pdb c.pdb --versions v13

Writes ``DIR/learning.json`` (per family: the figures, the baselines, parameters, steps, wall
time), ``DIR/<version>/samples/NAME.pdb`` beside ``DIR/<version>/ref/NAME.pdb`` for every
Mini-Fold version (so other programs can score them), ``DIR/<version>/rama.png`` (samples
beside references), the runs under ``DIR/runs/``, and prints a table at the end.
"""

from __future__ import annotations

import argparse
import json
import math
import shutil
import statistics
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared" / "data"
sys.path.insert(0, str(Path(__file__).resolve().parent))

#: Memorisation chains: whole CATH chains of at most 90 residues, four shipped with ptk and two
#: of ``../shared/data`` (mixed α/β, several with >= L long-range contacts).
MEMORISE: tuple[str, ...] = (
    "sample:2cviA.pdb.gz",
    "sample:2xcjA.pdb.gz",
    "sample:1i8nA.pdb.gz",
    "sample:2xdgA.pdb.gz",
    "shared:cath/dompdb/3uljB00",
    "shared:cath/dompdb/1r7aA02",
)
#: Held-out chains (``../shared/data``), never in a training set here.
HELD_OUT: tuple[str, ...] = tuple(
    f"shared:cath/dompdb/{name}"
    for name in ("1wzaA02", "1zjaA02", "1g5aA03", "1a04A02", "1cf7B00", "1ufmA00", "4gs3A00", "1fseB00")
)

FAMILIES: tuple[str, ...] = ("minifold", "qfitlatent", "pallatom")
MEMORISATION_TM = 0.7
CONTACT_PRECISION = 0.9
LONG_RANGE = 24


def resolve(spec: str) -> Path:
    """``sample:NAME`` (ptk's shipped CATH-style chains), ``shared:PATH`` or a plain path."""
    from ptk.datasets import sample_data_dir

    if spec.startswith("sample:"):
        return sample_data_dir("cath_style") / spec[len("sample:") :]
    if spec.startswith("shared:"):
        return SHARED / spec[len("shared:") :]
    return Path(spec)


def ingest(files: Sequence[Path], out: Path) -> Path:
    """The files as a cath shard dataset, written by the real ingest."""
    from ptk.pipelines.ingest import run_ingest

    if out.exists():
        shutil.rmtree(out)
    for path in files:
        if not path.is_file():
            raise SystemExit(f"learning.py: no structure file {path}")
    run_ingest("cath", [str(p) for p in files], out, scheduler="synchronous", progress=False)
    return out


def train(version: str, data: Path, out: Path, size: str, epochs: int, device: str, **sets: Any) -> dict:
    """``ptk train`` in-process: train = validation = ``data``, no early stop (5 validation chains
    are too few to stop on), whole chains."""
    from ptk.pipelines.train import run_training

    overrides = {"patience": 0, "progress": False, **sets}
    started = time.perf_counter()
    summary = run_training(
        version,
        data,
        out,
        val_data=data,
        epochs=epochs,
        size=size,
        device=device,
        overrides={k: str(v).lower() if isinstance(v, bool) else str(v) for k, v in overrides.items()},
    )
    summary["wall_s"] = time.perf_counter() - started
    return summary


def batch_of(task: Any, data: Path, device: torch.device, max_length: int = 1024) -> dict[str, Any]:
    """Every chain of ``data`` (whole) as one collated batch."""
    from ptk.models.trainer import to_device

    dataset = task.dataset(data, max_length=max_length, crop="first", seed=0)
    return to_device(task.collate([dataset[i] for i in range(len(dataset))]), device)


# ---------------------------------------------------------------------------------------------
# ContactClassifier


def separation_baseline(batch: dict[str, Any]) -> torch.Tensor:
    """P(contact | |i - j| = s) over the chains of ``batch`` (Laplace-smoothed), ``[s_max + 1]``."""
    mask = batch["residue_mask"].bool()
    n = mask.shape[1]
    index = torch.arange(n, device=mask.device)
    sep = (index[None, :] - index[:, None]).abs()
    pair = mask[:, :, None] & mask[:, None, :]
    contact = batch["contacts"].bool() & pair
    hits = torch.zeros(n, dtype=torch.float64).index_add_(
        0, sep.expand_as(pair)[pair].cpu(), contact[pair].double().cpu()
    )
    total = torch.zeros(n, dtype=torch.float64).index_add_(
        0, sep.expand_as(pair)[pair].cpu(), torch.ones(int(pair.sum()), dtype=torch.float64)
    )
    return (hits + 1) / (total + 2)


def separation_probs(table: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """``[b, n, n]`` contact probabilities of the separation baseline (the last entry beyond it)."""
    n = mask.shape[1]
    index = torch.arange(n)
    sep = (index[None, :] - index[:, None]).abs().clamp(max=len(table) - 1)
    return table[sep].expand(mask.shape[0], n, n).to(mask.device)


def contact_scores(prob: torch.Tensor, batch: dict[str, Any]) -> dict[str, list[float]]:
    from ptk.metrics import contact_metrics

    ca = batch["backbone"][:, :, 1].double()
    mask = batch["residue_mask"].bool() & torch.isfinite(ca).all(-1)
    out = contact_metrics(prob.double(), ca, mask, long_range=LONG_RANGE)
    return {k: [float(x) for x in out[k]] for k in ("top_l_long", "top_l5_long", "top_l_ceiling")}


def contact_classifier_figures(run: Path, train_data: Path, held_out: Path | None, device: str) -> dict:
    from ptk.models.runs import load_run_model

    dev = torch.device(device)
    task, model, config = load_run_model(run, "last", dev)
    result: dict[str, Any] = {"params": config["n_params"]}
    batch = batch_of(task, train_data, dev)
    with torch.no_grad():
        prob = torch.sigmoid(model(batch)["contact_logits"].float())
    mem = contact_scores(prob, batch)
    ratio = [
        p / c if c > 0 else math.nan for p, c in zip(mem["top_l_long"], mem["top_l_ceiling"], strict=True)
    ]
    result["memorisation"] = {
        "ids": list(batch["id"]),
        "top_l_long_precision": mem["top_l_long"],
        "top_l_ceiling": mem["top_l_ceiling"],
        "fraction_of_ceiling": ratio,
        "target": f">= {CONTACT_PRECISION} of the ceiling on every chain",
        "passed": all(r >= CONTACT_PRECISION for r in ratio if not math.isnan(r)),
    }
    if held_out is not None:
        table = separation_baseline(batch)
        test = batch_of(task, held_out, dev)
        with torch.no_grad():
            prob = torch.sigmoid(model(test)["contact_logits"].float())
        model_scores = contact_scores(prob, test)
        base_scores = contact_scores(separation_probs(table, test["residue_mask"].bool()), test)
        result["generalisation"] = {
            "ids": list(test["id"]),
            "top_l5_long_precision": model_scores["top_l5_long"],
            "baseline_separation_top_l5": base_scores["top_l5_long"],
            "mean": _nanmean(model_scores["top_l5_long"]),
            "baseline_mean": _nanmean(base_scores["top_l5_long"]),
        }
    return result


# ---------------------------------------------------------------------------------------------
# Mini-Fold


def _nanmean(values: Sequence[float]) -> float:
    finite = [v for v in values if not math.isnan(v)]
    return sum(finite) / len(finite) if finite else math.nan


def sample_scores(
    task: Any,
    model: Any,
    batch: dict[str, Any],
    dirs: dict[str, Path] | None,
    seed: int = 0,
    guidance: float | None = None,
) -> dict[str, list[float]]:
    """DDIM samples (50 steps, the version's eta and guidance unless ``guidance``) of every chain
    of ``batch`` and the one-step x0 from t = 100, scored against the references (written when
    ``dirs``)."""
    from ptk.models.tasks import write_and_score

    recipe = task.train
    guidance = recipe.sample_guidance if guidance is None else guidance
    generator = torch.Generator(device=batch["aatype"].device).manual_seed(seed)
    torch.manual_seed(seed)
    with torch.no_grad():
        ddim = task.sample(
            model, batch, steps=50, eta=recipe.sample_eta, guidance=guidance, generator=generator
        )
        x0 = task.predict_x0(model, batch, t=100, generator=generator)
    if dirs is None:
        from ptk.models.tasks import _score

        mask = batch["residue_mask"].bool()
        out = {}
        for method, pred in (("ddim", ddim), ("x0", x0)):
            scores = _score(pred["ca"].float(), batch["backbone"][..., 1, :].float(), mask)
            out.update({f"{method}_{k}": [float(x) for x in v] for k, v in scores.items()})
        return out
    rows = write_and_score(batch, {"ddim": ddim, "x0": x0}, dirs)
    out: dict[str, list[float]] = {}
    for row in rows:
        for key in ("tm", "rmsd", "lddt"):
            out.setdefault(f"{row['method']}_{key}", []).append(row[key])
    out["ca_trace"] = ddim["ca"]  # type: ignore[assignment]
    return out


def rama_figure(path: Path, samples: torch.Tensor, batch: dict[str, Any], title: str) -> Path:
    from ptk.plots import pseudo_ramachandran_figure, save_figure

    mask = batch["residue_mask"].bool()
    ref = batch["backbone"][:, :, 1]
    fig = pseudo_ramachandran_figure(
        {"training structures": (ref.cpu(), mask.cpu()), "DDIM samples": (samples.cpu(), mask.cpu())},
        title=title,
    )
    return save_figure(fig, path)


def untrained_model(task: Any, trained: Any, device: torch.device) -> Any:
    """The version's model at its initialisation (same seed as ``ptk train``), with the trained
    run's frozen stage-1 encoder, so the only difference is what training did."""
    torch.manual_seed(task.train.seed)
    model = task.build_model()
    model.encoder.load_state_dict(trained.encoder.state_dict())
    return model.to(device).eval()


def minifold_figures(
    version: str, run: Path, train_data: Path, held_out: Path | None, out: Path, device: str
) -> dict[str, Any]:
    from ptk.models.runs import load_run_model
    from ptk.plots import read_metrics

    dev = torch.device(device)
    task, model, config = load_run_model(run, "last", dev)
    batch = batch_of(task, train_data, dev)
    dirs = {"ddim": out / "samples", "ref": out / "ref", "x0": out / "x0"}
    mem = sample_scores(task, model, batch, dirs)
    rama = rama_figure(out / "rama.png", mem.pop("ca_trace"), batch, f"{version}: memorised samples")
    base = sample_scores(task, untrained_model(task, model, dev), batch, None)
    unguided = sample_scores(task, model, batch, None, guidance=1.0)
    median = statistics.median(mem["ddim_tm"])
    metrics = read_metrics(run)
    curve = [
        (int(e), float(tm)) for e, tm in zip(metrics["epoch"], metrics["ddim_tm"], strict=True) if tm == tm
    ]
    result: dict[str, Any] = {
        "params": config["n_params"],
        "memorisation": {
            "ids": list(batch["id"]),
            "ddim_tm": mem["ddim_tm"],
            "ddim_rmsd": mem["ddim_rmsd"],
            "median_tm": median,
            "x0_t100_tm": mem["x0_tm"],
            "guidance": task.train.sample_guidance,
            "eta": task.train.sample_eta,
            "ddim_tm_guidance_1": unguided["ddim_tm"],
            "median_tm_guidance_1": statistics.median(unguided["ddim_tm"]),
            "untrained_ddim_tm": base["ddim_tm"],
            "untrained_median_tm": statistics.median(base["ddim_tm"]),
            "tm_over_epochs": curve,
            "target": f"median TM >= {MEMORISATION_TM}",
            "passed": median >= MEMORISATION_TM,
            "rama": str(rama),
        },
    }
    if held_out is not None:
        test = batch_of(task, held_out, dev, max_length=int(config["train"]["max_length"]))
        trained = sample_scores(task, model, test, None)
        untrained = sample_scores(task, untrained_model(task, model, dev), test, None)
        result["generalisation"] = {
            "ids": list(test["id"]),
            "ddim_tm": trained["ddim_tm"],
            "untrained_ddim_tm": untrained["ddim_tm"],
            "mean_tm": _nanmean(trained["ddim_tm"]),
            "untrained_mean_tm": _nanmean(untrained["ddim_tm"]),
        }
    return result


# ---------------------------------------------------------------------------------------------
# the run


#: Epochs of stage 1 and of each Mini-Fold version: the six memorisation chains in batches of
#: two are three steps an epoch (600 Mini-Fold steps).
STAGE1_EPOCHS = 50
MINIFOLD_EPOCHS = 200


def run_minifold(args: argparse.Namespace, out: Path) -> dict[str, Any]:
    files = [resolve(c) for c in (args.chains or MEMORISE)]
    train_data = ingest(files, out / "shards" / "memorise")
    held = None if args.quick else ingest([resolve(c) for c in HELD_OUT], out / "shards" / "held_out")
    runs = out / "runs"
    results: dict[str, Any] = {}
    batch = {"batch_size": args.batch_size, "max_length": 1024, "sample_every": args.sample_every}
    stage1 = args.stage1_run or runs / "contact-classifier"
    if args.stage1_run is None:
        summary = train(
            "contact-classifier",
            train_data,
            stage1,
            args.size,
            args.stage1_epochs,
            args.device,
            **{**batch, "sample_every": 0},
        )
    else:
        summary = {"steps": None, "wall_s": 0.0}
    cc = contact_classifier_figures(stage1, train_data, held, args.device)
    cc.update(
        family="contact-classifier",
        version="contact-classifier",
        size=args.size,
        steps=summary["steps"],
        wall_s=summary["wall_s"],
    )
    results["contact-classifier"] = cc
    for version in args.versions:
        sets = dict(pair.split("=", 1) for pair in args.set)
        summary = train(
            version,
            train_data,
            runs / version,
            args.size,
            args.epochs,
            args.device,
            encoder_checkpoint=stage1,
            **batch,
            **sets,
        )
        figures = minifold_figures(version, runs / version, train_data, held, out / version, args.device)
        figures.update(
            family="minifold",
            version=version,
            size=args.size,
            steps=summary["steps"],
            wall_s=summary["wall_s"],
            stage1_wall_s=cc["wall_s"],
        )
        results[version] = figures
    return results


def table(results: dict[str, Any]) -> str:
    lines = [f"{'model':<20} {'params':>9} {'steps':>6} {'wall s':>7}  memorisation / generalisation"]
    for name, r in results.items():
        mem, gen = r.get("memorisation", {}), r.get("generalisation")
        if r["family"] == "minifold":
            what = (
                f"median DDIM TM {mem['median_tm']:.3f} (target {MEMORISATION_TM}; untrained "
                f"{mem['untrained_median_tm']:.3f}) {'PASS' if mem['passed'] else 'FAIL'}"
            )
            if gen:
                what += f"; held-out TM {gen['mean_tm']:.3f} vs untrained {gen['untrained_mean_tm']:.3f}"
        elif r["family"] == "contact-classifier":
            what = (
                f"top-L long-range precision {_nanmean(mem['top_l_long_precision']):.3f} of ceiling "
                f"{_nanmean(mem['top_l_ceiling']):.3f} {'PASS' if mem['passed'] else 'FAIL'}"
            )
            if gen:
                what += f"; held-out top-L/5 {gen['mean']:.3f} vs separation {gen['baseline_mean']:.3f}"
        else:
            what = r.get("summary", "")
        steps = r.get("steps") or 0
        lines.append(f"{name:<20} {r.get('params', 0):>9,} {steps:>6} {r.get('wall_s', 0):>7.0f}  {what}")
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="default families, memorisation only")
    parser.add_argument("--versions", nargs="+", default=["v13"], help="Mini-Fold versions (v10 ... v14)")
    parser.add_argument("--chains", nargs="+", default=None, help="memorisation chains (structure files)")
    parser.add_argument("--out", type=Path, default=Path("learning-out"))
    parser.add_argument("--device", choices=["cpu", "cuda"], default="cpu")
    parser.add_argument("--epochs", type=int, default=MINIFOLD_EPOCHS, help="Mini-Fold steps")
    parser.add_argument("--stage1-epochs", type=int, default=STAGE1_EPOCHS)
    parser.add_argument(
        "--stage1-run", type=Path, default=None, help="reuse this trained contact-classifier run as stage 1"
    )
    parser.add_argument("--batch-size", type=int, default=2, help="chains per training step")
    parser.add_argument("--size", choices=["small", "tiny", "default"], default="small")
    parser.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="a Mini-Fold config override, as ptk train --set (repeatable)",
    )
    parser.add_argument(
        "--sample-every", type=int, default=25, help="DDIM TM during training, every N epochs"
    )
    parser.add_argument(
        "--families",
        nargs="+",
        default=None,
        choices=FAMILIES,
        help="which families (default: all; minifold is the ContactClassifier and --versions)",
    )
    args = parser.parse_args(argv)
    out = args.out
    out.mkdir(parents=True, exist_ok=True)
    families = args.families or list(FAMILIES)
    started = time.perf_counter()
    results: dict[str, Any] = {}
    if "minifold" in families:
        results.update(run_minifold(args, out))
    if "qfitlatent" in families or "pallatom" in families:
        import learning_qfit

        if "qfitlatent" in families:
            results["qfitlatent"] = learning_qfit.run_qfitlatent(
                out, quick=args.quick, device=args.device, generalisation=not args.quick
            )
        if "pallatom" in families:
            results["pallatom-refiner"] = learning_qfit.run_pallatom(
                out, quick=args.quick, device=args.device
            )
    report = {
        "quick": args.quick,
        "device": args.device,
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),
        "wall_s": time.perf_counter() - started,
        "families": results,
    }
    (out / "learning.json").write_text(json.dumps(report, indent=2, default=str) + "\n")
    print(table(results))
    print(f"\nlearning.json → {out / 'learning.json'} ({report['wall_s']:.0f} s)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
