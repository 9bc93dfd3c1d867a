"""Structure-comparison metrics in torch, batched over many pairs, CPU or GPU.

Every metric compares a predicted Cα trace with a reference trace of the same residues:

- :func:`score_batch`: RMSD, TM-score, GDT-TS, GDT-HA and lDDT of ``[b, n, 3]`` pairs in one
  call (the one the training loop calls on DDIM samples); :func:`tm_score`, :func:`gdt_ts`,
  :func:`gdt_ha` and :func:`rmsd` are single-metric views of it.
- :func:`superposition_search`: the TM-score program's search, all seeds of all pairs at once.
- :func:`lddt`: Cα lDDT as ``biotite.structure.lddt`` computes it.
- :func:`contact_metrics`: precision, recall and top-L long-range accuracy of a contact
  probability map.
- :func:`tm_align`: sequence-independent comparison through tmtools (TM-align).
- :func:`evaluate_pairs`: structure files in, one row per pair out (what ``ptk eval`` runs).

TM-score and GDT follow the TM-score program (Zhang & Skolnick 2004; the current C++
``TMscore``, 2019–2022) step for step, so its numbers are reproduced, not approximated (all 120
pairs of ``eval_reference`` to its printed 4 decimals).

Modules:

- :mod:`~ptk.metrics.parameters`: the TM-score program's parameters (d0, search distances, seed
  lengths, GDT cutoffs);
- :mod:`~ptk.metrics.search`: its superposition search, batched in torch, the program's steps
  written out;
- :mod:`~ptk.metrics.kernel`: the same search in the compiled CPU kernel ``ptk._tmsearch``, and
  the choice between the two;
- :mod:`~ptk.metrics.scores`: the metrics of tensor pairs (:func:`score_batch` and its views, lDDT);
- :mod:`~ptk.metrics.contacts`: contact-map metrics;
- :mod:`~ptk.metrics.alignment`: the TM-align wrapper;
- :mod:`~ptk.metrics.evaluation`: structure files to a table of metrics, and its summaries.
"""

# ptk.metrics.G was geometry before the split, and tests reach ptk.geometry through it.
from ptk import geometry as G  # noqa: F401
from ptk.metrics.alignment import tm_align
from ptk.metrics.contacts import contact_metrics
from ptk.metrics.evaluation import (
    METRIC_COLUMNS,
    STRUCTURE_COLUMNS,
    CaTrace,
    PairedResidues,
    evaluate_pairs,
    long_range_contact_agreement,
    pair_files,
    pair_residues,
    read_ca,
    sse_fractions,
    summarize,
    summarize_by,
)
from ptk.metrics.kernel import native_search_available, search_backend
from ptk.metrics.parameters import GDT_CUTOFFS, search_distances, seed_lengths, tm_d0
from ptk.metrics.scores import gdt_ha, gdt_ts, lddt, rmsd, score_batch, tm_score
from ptk.metrics.search import superposition_search
from ptk.structure import structure_name

__all__ = [
    "GDT_CUTOFFS",
    "METRIC_COLUMNS",
    "STRUCTURE_COLUMNS",
    "sse_fractions",
    "long_range_contact_agreement",
    "CaTrace",
    "tm_d0",
    "seed_lengths",
    "search_distances",
    "superposition_search",
    "search_backend",
    "native_search_available",
    "score_batch",
    "tm_score",
    "gdt_ts",
    "gdt_ha",
    "rmsd",
    "lddt",
    "contact_metrics",
    "tm_align",
    "structure_name",
    "read_ca",
    "PairedResidues",
    "pair_residues",
    "pair_files",
    "evaluate_pairs",
    "summarize",
    "summarize_by",
]
