"""The static HTML training report of a model version (``ptk report``).

:func:`build_report` writes ``OUT/index.html`` plus ``OUT/figures/*.png`` for the run of one
version found under a runs folder (``docs/run-folder.md``: ``config.json``, ``metrics.csv``,
``samples/<name>/``). The page needs no network and no script: plain HTML, inline CSS and PNG
files next to it. Sections:

- version card (goal, architecture, parameters, recipe, dataset, what changed from the parent);
- training table (one row per epoch: every logged loss, DDIM scores when measured, NEW BEST /
  pat k, best rows highlighted);
- loss curves of this version overlaid on its ancestors that have runs
  (:func:`ptk.plots.loss_curves_figure`);
- DDIM evaluation of the latest sampling (TM, RMSD, GDT distributions from ``eval.csv``);
- pseudo-Ramachandran panels (ground truth, DDIM samples, x0 predictions) from the latest
  samples' PDB files (:func:`ptk.plots.pseudo_ramachandran_figure`) and contact maps
  (:func:`ptk.plots.contact_map_figure`);
- qFitLatent runs: NLL, per-χ accuracy and χ1/χ2 densities (:func:`ptk.plots.chi_density_figure`);
- a comparison table of every version that has a run.

This package reads run folders and draws; it imports no model code. What needs a model (the
contact classifier's predictions, qFitLatent's mixtures) is computed by the caller
(:mod:`ptk.pipelines.report`) and handed in as plain arrays (:class:`ContactPrediction`,
:class:`ChiPanel`). A section whose inputs are missing says so on the page, and
:attr:`Report.missing` lists the ``ptk`` command that would produce them.

Modules, one concept each: :mod:`~ptk.report.run` (run folders and samplings),
:mod:`~ptk.report.inputs` (what the caller hands in), :mod:`~ptk.report.blocks` (HTML building
blocks), :mod:`~ptk.report.page` (the page being built), the sections (:mod:`~ptk.report.card`,
:mod:`~ptk.report.training`, :mod:`~ptk.report.ddim`, :mod:`~ptk.report.structures`,
:mod:`~ptk.report.chi`, :mod:`~ptk.report.comparison`) and :mod:`~ptk.report.builder`.
"""

from ptk.report.blocks import cell as _cell  # noqa: F401  (the page's number format, for tests)
from ptk.report.builder import REPORT_MARKER, build_report, claim_report_folder
from ptk.report.inputs import ChiPanel, ContactPrediction, VersionInfo
from ptk.report.page import Missing, Report
from ptk.report.run import DIFFUSION_FAMILIES, Run, Sampling, find_runs, latest_samples, load_run, pick_run

__all__ = [
    "Run",
    "Sampling",
    "VersionInfo",
    "ContactPrediction",
    "ChiPanel",
    "Missing",
    "Report",
    "load_run",
    "find_runs",
    "pick_run",
    "latest_samples",
    "build_report",
    "claim_report_folder",
    "REPORT_MARKER",
    "DIFFUSION_FAMILIES",
]
