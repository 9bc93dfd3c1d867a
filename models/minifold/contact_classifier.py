"""The stage-1 ContactClassifier (minifold_report_page.txt, "Contact Classifier (Stage 1 —
Multi-task Encoder)"): a transformer over the sequence that predicts the CATH class, the CATH
architecture and the Cα < 8 Å contact map. Trained first; then frozen inside every Mini-Fold
denoiser, whose pair stack and denoiser read its single and pair embeddings.

Layout (the page gives dim 128, 2 towers, d_pair 64, 2 contact blocks with outer product mean,
1.2M parameters; the rest is this module's reading):

- tokens ``[CLS] r_1 … r_L [EOS] [PAD]…`` embedded, plus sinusoidal positions;
- two parallel transformer towers on the shared embedding: the *class tower* is attention-pooled
  into the 128-dim protein embedding (→ class and architecture heads), the *contact tower* gives
  the per-residue embedding;
- contact blocks: ``z += OPM(s)``, triangle multiplicative out + in, pair transition; contact
  logits from the pair, symmetrised.

Classifier-free guidance (v13) replaces residue tokens by MASK, never PAD: the attention mask is
``tokens != PAD``, and an all-PAD sequence left every query with no key (the page's NaN bug).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from jaxtyping import Bool, Float, Int
from torch import Tensor, nn

from ptk.metrics import contact_metrics
from ptk.models.attention import SelfAttentionWithPairBias
from ptk.models.linear import Linear
from ptk.models.minifold.config import ClassifierLossConfig, EncoderConfig
from ptk.models.precision import fp32_island, upcast
from ptk.models.rpe import LinearClippedRPE
from ptk.models.transition import OuterProductMean, Transition
from ptk.models.triangle import TriangleMultiplication

__all__ = [
    "PAD",
    "MASK",
    "CLS",
    "EOS",
    "AA_OFFSET",
    "VOCAB_SIZE",
    "CATH_CLASSES",
    "CATH_ARCHITECTURES",
    "tokenize",
    "class_index",
    "arch_index",
    "ContactClassifier",
    "classifier_loss",
]

#: Token ids. Residue tokens are ``aatype + AA_OFFSET`` (aatype 0..20, 20 = unknown).
PAD: int = 0
MASK: int = 1
CLS: int = 2
EOS: int = 3
AA_OFFSET: int = 4
VOCAB_SIZE: int = AA_OFFSET + 21

#: CATH classes predicted (1 mainly α, 2 mainly β, 3 α/β, 4 few secondary structures).
CATH_CLASSES: tuple[int, ...] = (1, 2, 3, 4)

#: The 38 CATH (class, architecture) pairs that label chains of the CATH 4.2 (Ingraham) split,
#: ``cath_nodes`` of ``../shared/data/cath/chain_set_splits.json`` (tests cross-check the file).
CATH_ARCHITECTURES: tuple[tuple[int, int], ...] = (
    (1, 10), (1, 20), (1, 25), (1, 40), (1, 50),
    (2, 10), (2, 20), (2, 30), (2, 40), (2, 50), (2, 60), (2, 70), (2, 80), (2, 90), (2, 100),
    (2, 102), (2, 110), (2, 115), (2, 120), (2, 130), (2, 150), (2, 160), (2, 170),
    (3, 10), (3, 15), (3, 20), (3, 30), (3, 40), (3, 50), (3, 55), (3, 60), (3, 65), (3, 70),
    (3, 75), (3, 80), (3, 90), (3, 100),
    (4, 10),
)  # fmt: skip

_ARCH_TABLE: dict[torch.device, Tensor] = {}


def class_index(cath_class: Int[Tensor, "*b"]) -> Int[Tensor, "*b"]:
    """CATH class 1..4 → 0..3; anything else → −1 (ignored by the loss)."""
    c = cath_class.long()
    return torch.where((c >= 1) & (c <= len(CATH_CLASSES)), c - 1, torch.full_like(c, -1))


def arch_index(cath_class: Int[Tensor, "*b"], cath_architecture: Int[Tensor, "*b"]) -> Int[Tensor, "*b"]:
    """(class, architecture number) → index into :data:`CATH_ARCHITECTURES`, −1 when unknown."""
    device = cath_class.device
    if device not in _ARCH_TABLE:
        table = torch.full((8, 256), -1, dtype=torch.long)
        for i, (c, a) in enumerate(CATH_ARCHITECTURES):
            table[c, a] = i
        _ARCH_TABLE[device] = table.to(device)
    table = _ARCH_TABLE[device]
    c, a = cath_class.long(), cath_architecture.long()
    ok = (c >= 0) & (c < table.shape[0]) & (a >= 0) & (a < table.shape[1])
    return torch.where(ok, table[c.clamp(0, table.shape[0] - 1), a.clamp(0, table.shape[1] - 1)], -1)


def tokenize(
    aatype: Int[Tensor, "b n"], mask: Bool[Tensor, "b n"], null: Bool[Tensor, " b"] | None = None
) -> tuple[Int[Tensor, "b n+2"], Bool[Tensor, "b n+2"]]:
    """``[CLS] residues [EOS] PAD…``, EOS after the last residue of ``mask``.

    A masked residue *inside* the chain (a residue without coordinates) becomes MASK, so the
    sequence keeps its length and positions. ``null`` marks the sequences of classifier-free
    guidance's unconditional pass: their residue tokens become MASK, CLS/EOS/PAD stay, so the
    attention mask ``tokens != PAD`` is unchanged.
    """
    b, n = aatype.shape
    index = torch.arange(n, device=aatype.device).expand(b, n)
    length = torch.where(mask, index + 1, torch.zeros_like(index)).amax(-1)  # last residue + 1
    inside = index < length[:, None]
    residues = aatype.long().clamp(0, 20) + AA_OFFSET
    hidden = ~mask if null is None else ~mask | null[:, None]
    residues = torch.where(hidden, torch.full_like(residues, MASK), residues)
    residues = residues.masked_fill(~inside, PAD)
    pad = torch.full_like(residues[:, :1], PAD)
    tokens = torch.cat([torch.full_like(residues[:, :1], CLS), residues, pad], 1)
    tokens = tokens.scatter(1, (length + 1)[:, None], EOS)
    return tokens, tokens.ne(PAD)


def _sinusoidal_positions(n: int, dim: int, device: torch.device) -> Tensor:
    pos = torch.arange(n, dtype=torch.float32, device=device)[:, None]
    freq = torch.exp(torch.arange(0, dim, 2, dtype=torch.float32, device=device) * (-math.log(10000.0) / dim))
    out = torch.zeros(n, dim, device=device)
    out[:, 0::2] = torch.sin(pos * freq)
    out[:, 1::2] = torch.cos(pos * freq[: dim // 2])
    return out


class TransformerLayer(nn.Module):
    """Pre-norm transformer layer: gated self-attention then a transition, both residual."""

    def __init__(self, dim: int, n_heads: int, expansion: int, dropout: float):
        super().__init__()
        self.attn = SelfAttentionWithPairBias(dim, None, c_head=dim // n_heads, n_heads=n_heads)
        self.ffn = Transition(dim, expansion)
        self.dropout = nn.Dropout(dropout)

    def forward(self, x: Float[Tensor, "b t c"], mask: Bool[Tensor, "b t"]) -> Float[Tensor, "b t c"]:
        x = x + self.dropout(self.attn(x, None, mask))
        return x + self.dropout(self.ffn(x, mask))


class ContactBlock(nn.Module):
    """``z += OPM(s)``; triangle multiplicative outgoing and incoming; pair transition."""

    def __init__(self, dim: int, d_pair: int, opm_dim: int, tri_mul_dim: int):
        super().__init__()
        self.opm = OuterProductMean(dim, d_pair, opm_dim)
        self.tri_out = TriangleMultiplication(d_pair, tri_mul_dim, outgoing=True)
        self.tri_in = TriangleMultiplication(d_pair, tri_mul_dim, outgoing=False)
        self.transition = Transition(d_pair, 4)

    def forward(
        self, s: Float[Tensor, "b n c"], z: Float[Tensor, "b n n d"], mask: Bool[Tensor, "b n"]
    ) -> Float[Tensor, "b n n d"]:
        pair_mask = mask[:, :, None] & mask[:, None, :]
        z = z + self.opm(s, mask)
        z = z + self.tri_out(z, pair_mask)
        z = z + self.tri_in(z, pair_mask)
        return z + self.transition(z, pair_mask)


class ContactClassifier(nn.Module):
    """Stage-1 encoder + heads. ``forward(batch)`` (a ``collate_cath`` batch) or
    :meth:`encode` (aatype, mask) return:

    - ``single`` ``[b, n, dim]`` per-residue embedding (contact tower), 0 on padding;
    - ``pair`` ``[b, n, n, d_pair]`` contact-block pair representation;
    - ``embedding`` ``[b, dim]`` attention-pooled protein embedding (class tower);
    - ``class_logits`` ``[b, 4]`` (CATH class 1..4 → 0..3), ``arch_logits`` ``[b, 38]``
      (:data:`CATH_ARCHITECTURES`), ``contact_logits`` ``[b, n, n]`` (symmetric).
    """

    def __init__(self, cfg: EncoderConfig):
        super().__init__()
        self.cfg = cfg
        self.embed = nn.Embedding(VOCAB_SIZE, cfg.dim)
        towers = ("class_tower", "contact_tower") if cfg.n_towers == 2 else ("contact_tower",)
        for name in towers:
            layers = [TransformerLayer(cfg.dim, cfg.n_heads, cfg.ffn_expansion, cfg.dropout)
                      for _ in range(cfg.layers_per_tower)]  # fmt: skip
            self.add_module(name, nn.ModuleList(layers))
        self.class_norm = nn.LayerNorm(cfg.dim)
        self.contact_norm = nn.LayerNorm(cfg.dim)
        self.pool = Linear(cfg.dim, 1)
        self.class_head = nn.Sequential(
            Linear(cfg.dim, cfg.dim, init="relu"), nn.ReLU(), Linear(cfg.dim, len(CATH_CLASSES))
        )
        self.arch_head = nn.Sequential(
            Linear(cfg.dim, cfg.dim, init="relu"), nn.ReLU(), Linear(cfg.dim, len(CATH_ARCHITECTURES))
        )
        self.rpe = LinearClippedRPE(cfg.d_pair, cfg.max_rel_pos)
        self.blocks = nn.ModuleList(
            ContactBlock(cfg.dim, cfg.d_pair, cfg.opm_dim, cfg.tri_mul_dim)
            for _ in range(cfg.n_contact_blocks)
        )
        self.pair_norm = nn.LayerNorm(cfg.d_pair)
        self.contact_head = Linear(cfg.d_pair, 1)

    def encode(
        self, aatype: Int[Tensor, "b n"], mask: Bool[Tensor, "b n"], null: Bool[Tensor, " b"] | None = None
    ) -> dict[str, Tensor]:
        b, n = aatype.shape
        mask = mask.bool()
        tokens, tok_mask = tokenize(aatype, mask, null)
        x = self.embed(tokens) + _sinusoidal_positions(n + 2, self.cfg.dim, tokens.device)
        x = x * tok_mask[..., None].to(x.dtype)
        contact = x
        for layer in self.contact_tower:
            contact = layer(contact, tok_mask)
        if self.cfg.n_towers == 2:
            cls = x
            for layer in self.class_tower:
                cls = layer(cls, tok_mask)
        else:
            cls = contact
        cls = self.class_norm(cls)
        weights = self.pool(cls)[..., 0].float().masked_fill(~tok_mask, -1e9)
        weights = torch.softmax(weights, -1).to(cls.dtype)
        embedding = (weights[..., None] * cls).sum(1)

        s = self.contact_norm(contact[:, 1 : n + 1]) * mask[..., None].to(contact.dtype)
        index = torch.arange(n, device=aatype.device).expand(b, n)
        z = self.rpe(index, mask)
        for block in self.blocks:
            z = block(s, z, mask)
        z = self.pair_norm(z)
        logits = self.contact_head(z)[..., 0]
        logits = 0.5 * (logits + logits.transpose(1, 2))
        return {
            "single": s,
            "pair": z * (mask[:, :, None] & mask[:, None, :])[..., None].to(z.dtype),
            "embedding": embedding,
            "class_logits": self.class_head(embedding),
            "arch_logits": self.arch_head(embedding),
            "contact_logits": logits,
        }

    def forward(self, batch: dict[str, Tensor]) -> dict[str, Tensor]:
        return self.encode(batch["aatype"], batch["residue_mask"])


def _accuracy(logits: Tensor, target: Tensor) -> Tensor:
    ok = target >= 0
    if not ok.any():
        return logits.new_zeros(())
    return (logits.argmax(-1)[ok] == target[ok]).float().mean()


def ca_trace(batch: dict[str, Tensor]) -> tuple[Float[Tensor, "b n 3"], Bool[Tensor, "b n"]]:
    """The batch's Cα coordinates (``backbone`` [b, n, 4, 3], N-Cα-C-O) and the residues that
    have one: the truth of the contact scores."""
    mask = batch["residue_mask"].bool()
    if "backbone_mask" in batch:
        mask = mask & batch["backbone_mask"][..., 1].bool()
    return batch["backbone"][..., 1, :], mask


def classifier_loss(
    out: dict[str, Tensor], batch: dict[str, Tensor], cfg: ClassifierLossConfig
) -> tuple[Tensor, dict[str, Tensor]]:
    """Weighted CATH class CE + architecture CE + class-balanced contact BCE (fp32).

    The contact BCE averages the positive and the negative pairs separately and takes their mean,
    so it reads ≈ 0.69 at chance whatever the contact density. Metrics (no gradient): class and
    architecture accuracy, contact recall and precision of the batch's pooled pairs as
    :func:`ptk.metrics.contact_metrics` defines them (p ≥ 0.5, |i − j| ≥ 6).

    Returns:
        (total, terms) with terms ``class_ce, arch_ce, contact_bce, class_acc, arch_acc,
        contact_recall, contact_precision``.
    """
    mask = batch["residue_mask"].bool()
    class_logits, arch_logits = upcast(out["class_logits"]), upcast(out["arch_logits"])
    logits = upcast(out["contact_logits"])
    with fp32_island(logits):
        y_class = class_index(batch["cath_class"].to(mask.device))
        y_arch = arch_index(batch["cath_class"].to(mask.device), batch["cath_architecture"].to(mask.device))
        zero = logits.sum() * 0.0
        class_ce = F.cross_entropy(class_logits, y_class, ignore_index=-1) if (y_class >= 0).any() else zero
        arch_ce = F.cross_entropy(arch_logits, y_arch, ignore_index=-1) if (y_arch >= 0).any() else zero

        n = mask.shape[1]
        idx = torch.arange(n, device=mask.device)
        far = (idx[None, :] - idx[:, None]).abs() >= cfg.contact_min_sep
        pair = mask[:, :, None] & mask[:, None, :] & far
        target = batch["contacts"].bool() & pair
        bce = F.binary_cross_entropy_with_logits(logits, target.float(), reduction="none")
        pos, neg = target, pair & ~target
        pos_term = (bce * pos).sum() / pos.sum().clamp(min=1)
        neg_term = (bce * neg).sum() / neg.sum().clamp(min=1)
        contact_bce = 0.5 * (pos_term + neg_term)
        total = cfg.class_ce * class_ce + cfg.arch_ce * arch_ce + cfg.contact_bce * contact_bce
        with torch.no_grad():
            scores = contact_metrics(torch.sigmoid(logits), *ca_trace(batch))
            recall = scores["n_correct"].sum() / scores["n_true"].sum().clamp(min=1)
            precision = scores["n_correct"].sum() / scores["n_predicted"].sum().clamp(min=1)
    terms = {
        "class_ce": class_ce.detach(),
        "arch_ce": arch_ce.detach(),
        "contact_bce": contact_bce.detach(),
        "class_acc": _accuracy(class_logits.detach(), y_class),
        "arch_acc": _accuracy(arch_logits.detach(), y_arch),
        "contact_recall": recall.float(),
        "contact_precision": precision.float(),
    }
    return total, terms
