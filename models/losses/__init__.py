"""Every training loss of ptk: Pallatom's (``../shared/seeds/pallatom_losses_api.txt``) and Mini-Fold's
(``../shared/seeds/minifold_report_page.txt``, "Loss Functions" and the v14 section).

Conventions:

- Each loss runs in fp32: half-precision inputs are cast up and autocast is off inside (float64
  stays float64), as the Mini-Fold report found necessary ("fp16 epsilon underflow").
- Distances come from :func:`ptk.geometry.pairwise_distances` / :func:`ptk.geometry.safe_norm`, so
  gradients stay finite at coincident points (never ``torch.cdist``'s backward).
- Masks are bool (or 0/1); ``None`` means all valid. Means run over valid elements only; an empty
  mask gives 0 with a zero (finite) gradient.
- Rotations have the frame axes as *columns* (global = ``R @ local + t``), as
  :func:`ptk.geometry.backbone_frames` and :mod:`ptk.models.rigid`.
- Pallatom losses return what the seed API documents; Mini-Fold losses return one value per
  example (the batch dims ``[...]``), and the caller takes ``.mean()``.
- Physical constants are arguments with Å defaults; in Mini-Fold's ÷10 space pass scaled values.
- ``residue_index`` (optional ``[..., n]`` int, e.g. ``batch["resnum"]``): terms between
  consecutive residues (bonds, angles, quartets, ω) count only where it steps by exactly +1.

One module per family, and the conventions above as code:

- :mod:`~ptk.models.losses.conventions`: fp32 inside, masks, masked means, the cross-entropy;
- :mod:`~ptk.models.losses.pallatom`: atom MSE, distograms, MED, smooth lDDT;
- :mod:`~ptk.models.losses.minifold`: FAPE, frame rotation, distance MSE, the Cα bond, angle and
  chirality terms, R_g, the auxiliary distance cross-entropy, clashes;
- :mod:`~ptk.models.losses.backbone`: the v14 backbone terms and their ideal values.
"""

from ptk.models.losses.backbone import (
    IDEAL_BACKBONE_ANGLES_DEG,
    IDEAL_BACKBONE_BONDS,
    backbone_angle_loss,
    backbone_bond_loss,
    backbone_fape_loss,
    omega_loss,
)
from ptk.models.losses.minifold import (
    aux_distance_ce_loss,
    bond_angle_loss,
    bond_weight,
    ca_bond_loss,
    chirality_loss,
    clash_loss,
    distance_mse_loss,
    distance_to_bins,
    fape_loss,
    frame_rotation_loss,
    log_rg_loss,
    radius_of_gyration,
)
from ptk.models.losses.pallatom import (
    atom_loss,
    distogram_loss_atom,
    distogram_loss_residue,
    med_loss,
    med_loss_per_block,
    smooth_lddt_loss,
)

__all__ = [
    # Pallatom
    "atom_loss",
    "distogram_loss_residue",
    "distogram_loss_atom",
    "med_loss_per_block",
    "med_loss",
    "smooth_lddt_loss",
    # Mini-Fold
    "fape_loss",
    "frame_rotation_loss",
    "distance_mse_loss",
    "ca_bond_loss",
    "bond_weight",
    "chirality_loss",
    "bond_angle_loss",
    "radius_of_gyration",
    "log_rg_loss",
    "distance_to_bins",
    "aux_distance_ce_loss",
    "clash_loss",
    "backbone_fape_loss",
    "backbone_bond_loss",
    "backbone_angle_loss",
    "omega_loss",
    "IDEAL_BACKBONE_BONDS",
    "IDEAL_BACKBONE_ANGLES_DEG",
]
