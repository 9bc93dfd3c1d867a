"""``pallatom-refiner``: an all-atom denoiser built from Pallatom's atom transformer, trained on the
``cath`` shards' heavy atoms with Pallatom's losses (Kabsch-aligned atom MSE + smooth lDDT,
``../shared/seeds/pallatom_losses_api.txt``).

A training example is one chain's heavy atoms in a compact 14-slot-per-residue layout (the
largest standard residue, TRP, has 14 heavy atoms), centred, with isotropic Gaussian noise of a
per-chain σ ~ U(noise_min, noise_max) Å. The model sees each atom's noisy position, element,
slot and residue type, and the residue types and relative sequence positions as trunk
features; :class:`~ptk.models.pallatom.atom_transformer.AtomFeatureEncoder` embeds the atoms over
the sparse residue window and :class:`~ptk.models.pallatom.atom_transformer.AtomAttentionDecoder`
predicts a per-atom position update. The loss is ``w_atom · atom_mse/σ² + w_lddt · (1 − smooth
lDDT)``: the MSE is divided by σ² so that returning the noisy input scores 1 at every noise level
(and a refiner that helps scores below 1).

Masked inputs: residues off ``residue_mask`` and atom slots off ``atom_mask`` take no part
(they are nobody's neighbour in the sparse window and are left out of both losses).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from jaxtyping import Bool, Float, Int
from torch import Tensor, nn

from ptk.errors import ConfigError
from ptk.models.pallatom.atom_transformer import AtomAttentionDecoder, AtomFeatureEncoder
from ptk.residues import ATOM37, NUM_RESTYPES, RESIDUE_HEAVY_ATOMS, RESTYPES_3

__all__ = [
    "RefinerConfig",
    "AtomRefiner",
    "atom14_table",
    "to_atom14",
    "centred_atom14",
    "noise_atoms",
    "refiner_loss",
]

SLOTS = 14
ELEMENTS = ("C", "N", "O", "S")


def atom14_table() -> tuple[np.ndarray, np.ndarray]:
    """(atom37 index [21, 14] with −1 on empty slots, element index [21, 14]) per residue type,
    from :data:`ptk.residues.RESIDUE_HEAVY_ATOMS` (OXT left out)."""
    index = np.full((NUM_RESTYPES, SLOTS), -1, dtype=np.int64)
    element = np.zeros((NUM_RESTYPES, SLOTS), dtype=np.int64)
    for r, name in enumerate(RESTYPES_3):
        for s, atom in enumerate(RESIDUE_HEAVY_ATOMS[name]):
            index[r, s] = ATOM37.index(atom)
            element[r, s] = ELEMENTS.index(atom[0])
    return index, element


_INDEX, _ELEMENT = atom14_table()


def to_atom14(
    aatype: Int[Tensor, "b n"],
    atoms: Float[Tensor, "b n 37 3"],
    atom_mask: Bool[Tensor, "b n 37"],
    residue_mask: Bool[Tensor, "b n"],
) -> tuple[Float[Tensor, "b n 14 3"], Bool[Tensor, "b n 14"], Int[Tensor, "b n 14"]]:
    """Heavy atoms in the 14-slot layout: (coordinates, present, element index)."""
    table = torch.as_tensor(_INDEX, device=aatype.device)[aatype.clamp(0, NUM_RESTYPES - 1)]  # [b,n,14]
    slot_ok = table >= 0
    gather = table.clamp(min=0)
    xyz = torch.gather(atoms, 2, gather[..., None].expand(*gather.shape, 3))
    present = slot_ok & torch.gather(atom_mask.bool(), 2, gather) & residue_mask.bool()[..., None]
    present = present & torch.isfinite(xyz).all(-1)
    xyz = torch.where(present[..., None], xyz, torch.zeros_like(xyz))
    element = torch.as_tensor(_ELEMENT, device=aatype.device)[aatype.clamp(0, NUM_RESTYPES - 1)]
    return xyz, present, element


@dataclass(frozen=True)
class RefinerConfig:
    """Sizes of the refiner. ``window_size`` is the sparse attention window in residues."""

    c_atom: int = 128
    c_atompair: int = 16
    c_token: int = 128
    c_pair: int = 16
    n_blocks: int = 3
    n_heads: int = 4
    window_size: int = 32
    max_rel_pos: int = 32
    coord_scale: float = 10.0  #: Å per model unit
    noise_min: float = 0.5  #: Å
    noise_max: float = 4.0  #: Å

    def __post_init__(self) -> None:
        for f in dataclasses.fields(self):
            if getattr(self, f.name) <= 0:
                raise ConfigError(f"pallatom-refiner {f.name} must be > 0, got {getattr(self, f.name)!r}")
        if self.c_atom % self.n_heads:
            raise ConfigError(
                f"pallatom-refiner c_atom {self.c_atom} is not divisible by n_heads {self.n_heads}"
            )
        if self.noise_max < self.noise_min:
            raise ConfigError("pallatom-refiner noise_max must be >= noise_min")

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> RefinerConfig:
        allowed = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(values) - allowed)
        if unknown:
            raise ConfigError(
                f"unknown pallatom-refiner key {unknown[0]!r}; allowed: {', '.join(sorted(allowed))}"
            )
        return cls(**values)


class AtomRefiner(nn.Module):
    """Noisy heavy atoms (14-slot layout, flattened) → denoised positions, in Å."""

    def __init__(self, cfg: RefinerConfig) -> None:
        super().__init__()
        self.cfg = cfg
        n_feat = len(ELEMENTS) + SLOTS + NUM_RESTYPES
        self.embed_res = nn.Embedding(NUM_RESTYPES, cfg.c_token)
        self.relpos = nn.Embedding(2 * cfg.max_rel_pos + 1, cfg.c_pair)
        self.encoder = AtomFeatureEncoder(
            f_ref_dim=3 + n_feat, c_token=cfg.c_token, c_pair=cfg.c_pair, c=cfg.c_token, d=cfg.c_atompair,
            m=cfg.c_atom, n_blocks=cfg.n_blocks, n_heads=cfg.n_heads, window_size=cfg.window_size,
        )  # fmt: skip
        self.decoder = AtomAttentionDecoder(
            cfg.c_token, cfg.c_pair, cfg.c_atom, cfg.c_atompair, cfg.n_blocks, cfg.n_heads, cfg.window_size
        )
        # start as the identity map (AF2's "final" init of output projections): an untrained refiner
        # returns its input instead of moving atoms by tens of Å
        nn.init.zeros_(self.decoder.proj_r.weight)

    def forward(
        self,
        r_noisy: Float[Tensor, "b n 14 3"],
        present: Bool[Tensor, "b n 14"],
        element: Int[Tensor, "b n 14"],
        aatype: Int[Tensor, "b n"],
        residue_mask: Bool[Tensor, "b n"],
    ) -> Float[Tensor, "b n 14 3"]:
        cfg = self.cfg
        b, n = aatype.shape
        dev = aatype.device
        flat = b, n * SLOTS
        tok = torch.arange(n, device=dev).repeat_interleave(SLOTS).expand(b, -1)
        mask = present.reshape(flat)
        feats = torch.cat(
            [
                nn.functional.one_hot(element, len(ELEMENTS)),
                nn.functional.one_hot(torch.arange(SLOTS, device=dev), SLOTS).expand(b, n, SLOTS, SLOTS),
                nn.functional.one_hot(aatype.clamp(0, NUM_RESTYPES - 1), NUM_RESTYPES)[:, :, None].expand(
                    b, n, SLOTS, NUM_RESTYPES
                ),
            ],
            dim=-1,
        ).reshape(*flat, -1)
        x = (r_noisy / cfg.coord_scale).reshape(*flat, 3) * mask[..., None]
        feats = feats.to(x.dtype) * mask[..., None]
        s = self.embed_res(aatype.clamp(0, NUM_RESTYPES - 1)) * residue_mask[..., None]
        rel = (torch.arange(n, device=dev)[None, :] - torch.arange(n, device=dev)[:, None]).clamp(
            -cfg.max_rel_pos, cfg.max_rel_pos
        )
        z = self.relpos(rel + cfg.max_rel_pos).expand(b, n, n, cfg.c_pair)
        s_i, q_skip, c_skip, p_skip, c_l = self.encoder(
            x, feats, tok, s, z, x, tok, atom_mask=mask, n_res=n
        )  # ref_pos = the noisy positions: their offsets within a residue are the geometry it sees
        _, _, r_update, _ = self.decoder(q_skip, p_skip, c_skip, c_l, s + s_i, z, tok, atom_mask=mask)
        out = r_noisy.reshape(*flat, 3) + r_update * cfg.coord_scale
        return (out * mask[..., None]).reshape(b, n, SLOTS, 3)


def centred_atom14(
    batch: dict[str, Any],
) -> tuple[Float[Tensor, "b n 14 3"], Bool[Tensor, "b n 14"], Int[Tensor, "b n 14"]]:
    """A ``collate_cath`` batch's heavy atoms in the 14-slot layout, each chain moved to put the
    centroid of its present atoms at the origin (0 on absent slots): (true, present, element)."""
    xyz, present, element = to_atom14(
        batch["aatype"], batch["atoms"], batch["atom_mask"], batch["residue_mask"]
    )
    b, n = batch["aatype"].shape
    w = present.reshape(b, -1, 1).to(xyz.dtype)
    flat = xyz.reshape(b, -1, 3)
    com = (flat * w).sum(1, keepdim=True) / w.sum(1, keepdim=True).clamp(min=1)
    return ((flat - com) * w).reshape(b, n, SLOTS, 3), present, element


def noise_atoms(
    true: Float[Tensor, "b n 14 3"],
    present: Bool[Tensor, "b n 14"],
    sigma: Float[Tensor, " b"],
    generator: torch.Generator | None = None,
) -> Float[Tensor, "b n 14 3"]:
    """The refiner's noise model: isotropic Gaussian noise of per-chain std ``sigma`` (Å) on every
    present atom (absent slots stay 0); ``generator`` may live on another device than ``true``."""
    gen_device = generator.device if generator is not None else true.device
    eps = torch.randn(true.shape, generator=generator, device=gen_device).to(true.device)
    return (true + sigma.to(true.dtype)[:, None, None, None] * eps) * present[..., None]


def refiner_loss(
    model: AtomRefiner,
    batch: dict[str, Any],
    *,
    w_atom: float = 1.0,
    w_lddt: float = 1.0,
    generator: torch.Generator | None = None,
) -> tuple[Tensor, dict[str, Tensor]]:
    """One step of the refiner on a ``collate_cath`` batch: noise, denoise, score.

    Terms: ``atom_mse`` (Å², Kabsch-aligned, Pallatom ``atom_loss``), ``atom_mse_rel``
    (atom_mse/σ²: 1 = no better than the noisy input), ``smooth_lddt`` (1 − smooth lDDT, Pallatom
    Alg. 8), ``noisy_lddt`` (the same for the noisy input: the baseline to beat).
    """
    from ptk.models.losses import atom_loss, smooth_lddt_loss

    cfg = model.cfg
    true, present, element = centred_atom14(batch)
    b, n = batch["aatype"].shape
    device = true.device
    gen_device = generator.device if generator is not None else device
    u = torch.rand(b, generator=generator, device=gen_device).to(device)
    sigma = cfg.noise_min + (cfg.noise_max - cfg.noise_min) * u
    noisy = noise_atoms(true, present, sigma, generator)
    pred = model(noisy, present, element, batch["aatype"], batch["residue_mask"].bool())

    mask = present.reshape(b, -1)
    p_flat, t_flat = pred.reshape(b, -1, 3).float(), true.reshape(b, -1, 3).float()
    mse = atom_loss(p_flat, t_flat, mask)  # [b], Å²
    rel = (mse / sigma.float() ** 2).mean()
    lddt = smooth_lddt_loss(p_flat, t_flat, mask)
    with torch.no_grad():
        noisy_lddt = smooth_lddt_loss(noisy.reshape(b, -1, 3).float(), t_flat, mask)
    total = w_atom * rel + w_lddt * lddt
    terms = {
        "atom_mse": mse.mean().detach(),
        "atom_mse_rel": rel.detach(),
        "smooth_lddt": lddt.detach(),
        "noisy_lddt": noisy_lddt.detach(),
    }
    return total, terms
