"""What the predicted structures look like: pseudo-Ramachandran panels of the samples and
contact maps."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

from ptk.report.blocks import figure
from ptk.report.inputs import ContactPrediction
from ptk.report.page import Page
from ptk.report.run import DIFFUSION_FAMILIES, Run, Sampling


def _read_traces(folder: Path, limit: int = 400) -> list[np.ndarray]:
    """Cα coordinates of the structure files in ``folder`` (sorted, at most ``limit``)."""
    import warnings

    from ptk.errors import StructureError
    from ptk.metrics import read_ca

    if not folder.is_dir():
        return []
    out = []
    files = sorted(p for p in folder.iterdir() if p.is_file() and p.suffix in (".pdb", ".cif", ".gz"))
    for path in files[:limit]:
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                out.append(read_ca(path).coords)
        except StructureError:
            continue
    return out


def structure_section(
    page: Page, run: Run, sampling: Sampling | None, contacts: Sequence[ContactPrediction]
) -> None:
    from ptk.plots import contact_map_figure, pseudo_ramachandran_figure

    parts = []
    if run.family in DIFFUSION_FAMILIES and sampling is not None:
        sets = {
            "ground truth": _read_traces(sampling.ref),
            "DDIM samples": _read_traces(sampling.ddim),
            "x0 predictions": _read_traces(sampling.x0),
        }
        empty = [k for k, v in sets.items() if not v]
        sets = {k: v for k, v in sets.items() if v}
        if sets:
            fig = pseudo_ramachandran_figure(
                sets, title=f"{run.version} pseudo-Ramachandran ({sampling.label})"
            )
            parts.append(
                figure(
                    page.save(fig, "pseudo_ramachandran.png"),
                    "pseudo-Ramachandran panels",
                    "Consecutive Cα pseudo-torsions (τᵢ₋₁, τᵢ), as the Mini-Fold page draws them: "
                    "helices sit near (50°, 50°), strands around (−150°, −150°), wrapping across "
                    "the ±180° edges to the top-left corner (the page writes (−120°, 120°)); "
                    "samples that learned local geometry concentrate there. "
                    "<code>ptk plot rama --axes tau-theta</code> draws τ against the pseudo-bond angle θ.",
                )
            )
        for k in empty:
            parts.append(page.miss("rama", f"no {k} PDB files in {sampling.path}"))
        ref, ddim = sampling.ref, sampling.ddim
        pairs = [(p, ddim / p.name) for p in sorted(ref.glob("*.pdb")) if (ddim / p.name).is_file()]
        if pairs and not contacts:
            from ptk.metrics import read_ca

            ref_path, pred_path = pairs[0]
            ref_ca, pred_ca = read_ca(ref_path).coords, read_ca(pred_path).coords
            if len(ref_ca) == len(pred_ca):
                d = np.linalg.norm(pred_ca[:, None] - pred_ca[None], axis=-1)
                fig = contact_map_figure(
                    (d < 8.0).astype(float),
                    ref_ca,
                    title=f"{ref_path.stem}: reference contacts vs the DDIM sample's (Cα < 8 Å, as 0/1)",
                )
                parts.append(figure(page.save(fig, "contact_map_sample.png"), "contact map of a sample"))
    elif run.family in DIFFUSION_FAMILIES:
        parts.append(page.miss("rama", "no samples, so no pseudo-Ramachandran panels"))
    for i, pred in enumerate(contacts[:3]):
        fig = contact_map_figure(pred.prob, pred.ca, title=f"{pred.id}: predicted contact probabilities")
        parts.append(figure(page.save(fig, f"contact_map_{i}.png"), f"contact map {pred.id}"))
    if run.family == "contact-classifier" and not contacts:
        parts.append(page.miss("contacts", "no contact predictions were computed for this run"))
    if parts:
        title = "Pseudo-Ramachandran and contact maps" if run.family in DIFFUSION_FAMILIES else "Contact maps"
        page.add("structure", title, "".join(parts))
