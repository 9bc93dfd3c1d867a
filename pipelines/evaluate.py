"""``ptk eval`` (score predicted structures against references) and ``ptk plot`` (figures).

``ptk eval --pred DIR --ref DIR --out scores.csv`` pairs the files of the two folders by name
(extension and ``.gz`` stripped), scores every pair with :func:`ptk.metrics.evaluate_pairs`
(TM-score, GDT-TS/HA and RMSD as the TM-score program computes them, lDDT as biotite does, and
TM-align with ``--align``) and writes one row per pair, with the reason in ``error`` where a
pair could not be scored. ``ptk plot rama|contacts|losses|chi`` write the figures of
:mod:`ptk.plots` as PNG.
"""

from __future__ import annotations

import logging
import math
from pathlib import Path

import click

from ptk.errors import PtkError
from ptk.files import atomic_writer

__all__ = ["eval_command", "plot"]

log = logging.getLogger("ptk.eval")

_NOT_STRUCTURES = {
    ".csv", ".tsv", ".json", ".txt", ".log", ".md", ".html", ".parquet", ".png", ".svg", ".pdf",
    ".npy", ".npz", ".pt", ".pth", ".pkl", ".yaml", ".yml", ".toml", ".py", ".sh",
}  # fmt: skip


def _device(name: str):
    import torch

    if name == "cuda" and not torch.cuda.is_available():
        raise PtkError("--device cuda: no CUDA device is available (use --device cpu)")
    return torch.device(name)


def _dec4(value: float) -> str:
    return "nan" if value is None or (isinstance(value, float) and math.isnan(value)) else f"{value:.4f}"


def _check_writable(path: Path) -> None:
    """Raise, naming ``path``, when a file cannot be written there (its folder is made)."""
    import tempfile

    if path.is_dir():
        raise PtkError(f"--out {path}: a folder, not a table file")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=path.parent, prefix=f".{path.name}.", suffix=".probe"):
            pass
    except OSError as exc:
        raise PtkError(f"--out {path}: cannot write there ({exc.strerror or exc})") from None


@click.command("eval")
@click.option(
    "--pred",
    "pred_dir",
    required=True,
    type=click.Path(exists=True, file_okay=False, path_type=Path),
    help="Folder of predicted structures (PDB/mmCIF, .gz allowed).",
)
@click.option(
    "--ref",
    "ref_dir",
    required=True,
    type=click.Path(exists=True, file_okay=False, path_type=Path),
    help="Folder of reference structures, paired with the predictions by file name.",
)
@click.option(
    "--out",
    "out_path",
    required=True,
    type=click.Path(dir_okay=False, path_type=Path),
    help="Output table: FILE.csv or FILE.parquet.",
)
@click.option("--align", is_flag=True, help="Also run TM-align (sequence independent): column tm_align.")
@click.option(
    "--structure-stats",
    is_flag=True,
    help="Also helix/strand/coil fractions of both sides (biotite's Cα P-SEA) and the prediction's "
    "long-range (|i-j| >= 24) Cα-contact precision and recall: did the model learn β-sheets?",
)
@click.option(
    "--atom-records-only",
    is_flag=True,
    help="Read ATOM records only, as the TM-score program does: residues written as HETATM "
    "(modified residues such as MSE, SME) are left out of both files. By default they count as "
    "their parent residue.",
)
@click.option(
    "--by",
    type=click.Choice(["cath_class"]),
    default=None,
    help="Also summarise per CATH class (1 mainly alpha, 2 mainly beta, 3 alpha beta, 4 few "
    "secondary structures), looked up in --labels by structure name (or the part before its first "
    "underscore): column cath_class.",
)
@click.option(
    "--labels",
    type=click.Path(exists=True, file_okay=False, path_type=Path),
    default=None,
    help="A cath shard dataset (ptk ingest cath) whose id and cath_class columns label the pairs.",
)
@click.option("--device", type=click.Choice(["cpu", "cuda"]), default="cpu", show_default=True,
              help="Where the batched metrics run.")  # fmt: skip
def eval_command(
    pred_dir: Path,
    ref_dir: Path,
    out_path: Path,
    align: bool,
    structure_stats: bool,
    atom_records_only: bool,
    by: str | None,
    labels: Path | None,
    device: str,
) -> None:
    """Score predicted structures against references, one row per pair of same-named files.

    \b
    Columns: name, n_common, ref_length, rmsd, tm, gdt_ts, gdt_ha, lddt [, tm_align]
    [, ref_/pred_ helix, strand, coil, lr_contact_precision, lr_contact_recall]
    [, cath_class], error.
    Residues are matched by residue number + insertion code; TM and GDT are normalised by the
    reference length (as the TM-score program does). Modified residues (MSE, SME, …) count as
    their parent residue even where written as HETATM; --atom-records-only leaves those out,
    as the TM-score program does. A pair that cannot be scored (missing partner, unreadable
    file, no common residue) gets its reason in `error`.
    """
    from ptk.metrics import evaluate_pairs, pair_files, summarize

    suffix = out_path.suffix.lower()
    if suffix not in (".csv", ".parquet"):
        raise PtkError(f"--out {out_path}: the table must end in .csv or .parquet")
    if by is not None and labels is None:
        raise click.UsageError("--by cath_class needs --labels SHARDS (a cath shard dataset)")
    from ptk.shards import cath_classes

    classes = cath_classes(labels) if by is not None else None
    torch_device = _device(device)
    rows = [r for r in pair_files(pred_dir, ref_dir) if not _skipped(r[1] or r[2])]
    if not rows:
        raise PtkError(f"no structure files in {pred_dir} or {ref_dir}")
    _check_writable(out_path)  # before the scoring, not after it
    names, preds, refs, problems = (list(column) for column in zip(*rows, strict=True))
    frame = evaluate_pairs(
        preds,
        refs,
        torch_device,
        align=align,
        structure_stats=structure_stats,
        names=names,
        problems=problems,
        atom_records_only=atom_records_only,
    )
    if classes is not None:
        frame["cath_class"] = frame["name"].map(lambda n: _class_of(n, classes)).astype("Int64")
        if frame["cath_class"].isna().all():
            click.echo(f"ptk: note: no pair name is an id of {labels} with a CATH class", err=True)
    if suffix == ".csv":
        with atomic_writer(out_path, "w", newline="", encoding="utf-8") as fh:
            frame.to_csv(fh, index=False)
    else:
        with atomic_writer(out_path, "wb") as fh:
            frame.to_parquet(fh, index=False)
    failed = int(frame["error"].notna().sum())
    click.echo(f"{len(frame) - failed} of {len(frame)} pairs scored -> {out_path}")
    summary = summarize(frame)
    if summary:
        width = max(9, *(len(metric) for metric in summary))
        click.echo(f"{'metric':<{width}} {'mean':>8} {'median':>8} {'n':>6}")
        for metric, stats in summary.items():
            click.echo(
                f"{metric:<{width}} {_dec4(stats['mean']):>8} {_dec4(stats['median']):>8} {stats['n']:>6}"
            )
    if classes is not None:
        _print_by_class(frame)
    for _, row in frame[frame["error"].notna()].head(10).iterrows():
        click.echo(f"  not scored: {row['name']}: {row['error']}", err=True)
    if failed > 10:
        click.echo(f"  ... and {failed - 10} more (see the error column)", err=True)


def _class_of(name: str, classes: dict[str, int]) -> int | None:
    """The class of the structure named ``name``, else of the id before its first underscore
    (``1a04A02_noise0.5`` → ``1a04A02``)."""
    return classes.get(name, classes.get(name.split("_", 1)[0]))


#: The per-class table's columns (those the frame has): the answer to "did it learn β-sheets?".
_BY_CLASS_COLUMNS = (
    "tm",
    "rmsd",
    "ref_helix",
    "pred_helix",
    "ref_strand",
    "pred_strand",
    "lr_contact_recall",
)


def _print_by_class(frame) -> None:
    from ptk.labels import CATH_CLASS_NAMES
    from ptk.metrics import summarize_by

    groups = summarize_by(frame, "cath_class")
    columns = [c for c in _BY_CLASS_COLUMNS if c in frame]
    click.echo("")
    click.echo(f"{'CATH class':<28} {'n':>4} " + " ".join(f"{c:>17}" for c in columns))
    for key, summary in groups.items():
        label = "no class" if key is None else f"{int(key)} {CATH_CLASS_NAMES.get(int(key), '?')}"
        n = summary["tm"]["n"] if "tm" in summary else 0
        cells = " ".join(f"{_dec4(summary[c]['mean']) if c in summary else 'nan':>17}" for c in columns)
        click.echo(f"{label:<28} {n:>4} {cells}")
    click.echo("(means over the scored pairs of each class)")


def _skipped(path: Path | None) -> bool:
    """Files that are certainly not structures (tables, logs, images, arrays) are not paired."""
    if path is None:
        return False
    name = path.name.lower().removesuffix(".gz")
    return Path(name).suffix in _NOT_STRUCTURES


# ---------------------------------------------------------------------------------------------
# ptk plot


@click.group("plot")
def plot() -> None:
    """Write figures as PNG: pseudo-Ramachandran, contact maps, loss curves, χ densities."""


def _structure_paths(path: Path) -> list[Path]:
    if path.is_dir():
        files = [p for p in sorted(path.iterdir()) if p.is_file() and not p.name.startswith(".")]
        return [p for p in files if not _skipped(p)]
    if path.is_file():
        return [path]
    raise PtkError(f"{path}: no such file or folder")


def _traces(path: Path) -> list:
    """Cα traces of every chain of every structure under ``path``, split at residue-number gaps
    (so a chain break does not make a pseudo-torsion)."""
    import numpy as np
    import torch

    from ptk.structure import read_chains

    traces = []
    for file in _structure_paths(path):
        try:
            parsed = read_chains(file)
        except PtkError as exc:
            log.warning("skipped %s", exc)
            continue
        for chain in parsed.chains:
            ca = chain.positions[:, 1].astype(np.float64)
            breaks = np.nonzero(np.diff(chain.resnum) != 1)[0] + 1
            for segment in np.split(np.arange(len(chain)), breaks):
                if len(segment) >= 4:
                    traces.append(torch.from_numpy(ca[segment]))
    if not traces:
        raise PtkError(f"{path}: no readable protein chain")
    return traces


def _panels(options: tuple[str, ...]) -> list[tuple[str, Path]]:
    out = []
    for option in options:
        label, sep, path = option.partition("=")
        if not sep or not label or not path:
            raise PtkError(f"--panel {option!r}: expected LABEL=PATH")
        out.append((label, Path(path)))
    return out


def _save(fig, out: Path) -> None:
    from ptk.plots import save_figure

    if out.suffix.lower() != ".png":
        raise PtkError(f"--out {out}: figures are written as .png")
    click.echo(f"wrote {save_figure(fig, out)}")


@plot.command("rama")
@click.option(
    "--ref",
    "ref",
    type=click.Path(exists=True, path_type=Path),
    help="Reference structures (file or folder).",
)
@click.option("--ddim", type=click.Path(exists=True, path_type=Path), help="DDIM samples (file or folder).")
@click.option("--x0", type=click.Path(exists=True, path_type=Path), help="x0 predictions (file or folder).")
@click.option(
    "--samples",
    type=click.Path(exists=True, file_okay=False, path_type=Path),
    help="A run's samples/epoch_NNN folder: takes its ref/, ddim/ and x0/ subfolders.",
)
@click.option("--panel", "panels", multiple=True, metavar="LABEL=PATH", help="Any other panel (repeatable).")
@click.option("--out", required=True, type=click.Path(dir_okay=False, path_type=Path), help="PNG to write.")
@click.option(
    "--axes",
    type=click.Choice(["tau-tau", "tau-theta"]),
    default="tau-tau",
    show_default=True,
    help="tau-tau: consecutive Cα pseudo-torsions (the Mini-Fold page's; helix at 50°, 50°); "
    "tau-theta: pseudo-torsion against pseudo-bond angle (helix at 50°, 91°).",
)
@click.option("--title", default=None, help="Figure title.")  # fmt: skip
def plot_rama(ref, ddim, x0, samples, panels, out, axes, title) -> None:
    """Pseudo-Ramachandran densities of Cα traces, one panel per set."""
    from ptk.plots import pseudo_ramachandran_figure

    chosen: list[tuple[str, Path]] = []
    if samples is not None:
        for label, sub in (("reference", "ref"), ("DDIM", "ddim"), ("x0", "x0")):
            if (samples / sub).is_dir():
                chosen.append((label, samples / sub))
    for label, path in (("reference", ref), ("DDIM", ddim), ("x0", x0)):
        if path is not None:
            chosen = [c for c in chosen if c[0] != label] + [(label, path)]
    chosen += _panels(panels)
    if not chosen:
        raise PtkError("nothing to plot: give --ref, --ddim, --x0, --samples or --panel")
    fig = pseudo_ramachandran_figure({label: _traces(path) for label, path in chosen}, axes=axes, title=title)
    _save(fig, out)


def _load_probabilities(path: Path, ref):
    """A contact probability map from ``.npy``/``.npz``/``.pt``, or from a predicted structure
    (matched to the reference by residue number): p = sigmoid(8 Å − d) of its Cα distances, so
    p ≥ 0.5 exactly where it has a contact and closer pairs rank first for top-L."""
    import numpy as np
    import torch

    from ptk import geometry as G
    from ptk.metrics import pair_residues, read_ca

    suffix = path.suffix.lower()
    if suffix == ".npy":
        return np.load(path)
    if suffix == ".npz":
        with np.load(path) as data:
            return data[data.files[0]]
    if suffix in (".pt", ".pth"):
        return torch.load(path, map_location="cpu", weights_only=True)
    paired = pair_residues(read_ca(path), ref)  # rows: the reference's residues first, in order
    ca = torch.from_numpy(paired.pred_xyz[: len(ref)])
    present = torch.from_numpy(paired.mask[: len(ref)])
    ca = torch.where(present[:, None], ca, 0.0)
    prob = torch.sigmoid(8.0 - G.pairwise_distances(ca))
    return torch.where(present[:, None] & present[None, :], prob, 0.0)


@plot.command("contacts")
@click.option(
    "--ref",
    "ref",
    required=True,
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="Reference structure (first chain): the true Cα < 8 Å map.",
)
@click.option(
    "--pred",
    "pred",
    required=True,
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="Predicted probabilities [n,n] (.npy/.npz/.pt) or a predicted structure.",
)
@click.option(
    "--threshold", default=0.5, show_default=True, help="Probability counted as a predicted contact."
)
@click.option("--out", required=True, type=click.Path(dir_okay=False, path_type=Path), help="PNG to write.")
@click.option("--title", default=None, help="Figure title.")  # fmt: skip
def plot_contacts(ref, pred, threshold, out, title) -> None:
    """Truth beside prediction, with precision, recall and top-L long-range accuracy."""
    from ptk.metrics import read_ca
    from ptk.plots import contact_map_figure

    reference = read_ca(ref)
    prob = _load_probabilities(pred, reference)
    fig = contact_map_figure(prob, reference.coords, threshold=threshold, title=title or ref.name)
    _save(fig, out)


@plot.command("losses")
@click.argument("runs", nargs=-1, required=True, type=click.Path(exists=True, path_type=Path))
@click.option(
    "--terms",
    default="loss",
    show_default=True,
    help="Comma-separated loss terms (columns train_<term>/val_<term>), one panel each.",
)
@click.option("--linear", is_flag=True, help="Linear y axis (default: logarithmic when positive).")
@click.option("--out", required=True, type=click.Path(dir_okay=False, path_type=Path), help="PNG to write.")
@click.option("--title", default=None, help="Figure title.")  # fmt: skip
def plot_losses(runs, terms, linear, out, title) -> None:
    """Loss curves of several runs overlaid (run folders or metrics.csv files)."""
    from ptk.plots import loss_curves_figure

    term_list = [t.strip() for t in terms.split(",") if t.strip()]
    fig = loss_curves_figure(list(runs), terms=term_list, log=False if linear else None, title=title)
    _save(fig, out)


@plot.command("chi")
@click.option(
    "--panel",
    "panels",
    multiple=True,
    required=True,
    metavar="LABEL=PATH",
    help="Structures (file or folder) for one panel (repeatable).",
)
@click.option("--chis", default="1,2", show_default=True, help="The two χ to plot (1-based).")
@click.option("--out", required=True, type=click.Path(dir_okay=False, path_type=Path), help="PNG to write.")
@click.option("--title", default=None, help="Figure title.")  # fmt: skip
def plot_chi(panels, chis, out, title) -> None:
    """χ densities (default χ1 vs χ2) of structure sets, one panel per set."""
    import numpy as np
    import torch

    from ptk import geometry as G
    from ptk.plots import chi_density_figure
    from ptk.structure import read_chains

    try:
        a, b = (int(c) - 1 for c in chis.split(","))
    except ValueError as exc:
        raise PtkError(f"--chis {chis!r}: expected two numbers 1-4, e.g. 1,2") from exc
    if not (0 <= a < 4 and 0 <= b < 4):
        raise PtkError(f"--chis {chis!r}: χ numbers are 1-4")
    sets = {}
    for label, path in _panels(panels):
        chi_all, mask_all = [], []
        for file in _structure_paths(path):
            try:
                parsed = read_chains(file)
            except PtkError as exc:
                log.warning("skipped %s", exc)
                continue
            for chain in parsed.chains:
                chi, mask = G.chi_angles(
                    torch.from_numpy(chain.positions), torch.from_numpy(chain.mask),
                    torch.from_numpy(chain.aatype.astype(np.int64)),
                )  # fmt: skip
                chi_all.append(chi)
                mask_all.append(mask)
        if not chi_all:
            raise PtkError(f"{path}: no readable protein chain")
        sets[label] = (torch.cat(chi_all), torch.cat(mask_all))
    _save(chi_density_figure(sets, chis=(a, b), title=title), out)
