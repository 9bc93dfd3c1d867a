"""Pallatom's sparse windowed atom transformers (``../shared/seeds/pallatom_atom_transformers_api.txt``).

Atom l attends to atom m iff ``|tok_l − tok_m| < window_size // 2`` (the 32-residue window). Every
pair tensor is *sparse*: ``[B, N, K, ·]`` where slot k of atom l holds the pair
``(l, neighbor_idx[l, k])`` and K is the largest neighbour count of any atom. Nothing of size N × N
is ever allocated, not even while building the index: :func:`build_sparse_pairs` sorts the atoms by
token and finds each atom's window ``[start, end)`` in the sorted order with two binary searches,
so the index costs O(N log N) time and O(N · K) memory (the seed document's O(N²) boolean
intermediate is gone). Trunk pair features ``z`` are projected at residue level and then gathered.

Shape letters: ``B`` batch, ``N`` atoms, ``K`` neighbour slots, ``R`` residues (tokens).
"""

from __future__ import annotations

import torch
from jaxtyping import Bool, Float, Int
from torch import Tensor, nn

from ptk.models.linear import LinearNoBias

__all__ = [
    "WINDOW_SIZE",
    "LinearNoBias",
    "build_sparse_pairs",
    "gather_neighbors",
    "AtomTransformerBlock",
    "AtomTransformer",
    "AtomFeatureEncoder",
    "AtomAttentionDecoder",
]

#: Total window span in residues; atom l sees m iff |tok_l − tok_m| < WINDOW_SIZE // 2.
WINDOW_SIZE: int = 32


def build_sparse_pairs(
    tok_idx: Int[Tensor, "*b N"],
    window_size: int = WINDOW_SIZE,
    atom_mask: Bool[Tensor, "*b N"] | None = None,
) -> tuple[Int[Tensor, "*b N K"], Bool[Tensor, "*b N K"]]:
    """For each atom l, the indices of all atoms m with ``|tok_idx[l] − tok_idx[m]| < window_size // 2``.

    ``tok_idx`` need not be sorted (a stable sort is taken; for sorted input the neighbours of each
    atom come out in ascending atom order). Atoms with ``atom_mask`` False have no neighbours and
    are nobody's neighbour. No N × N intermediate: memory is O(N · K).

    Returns:
        (neighbor_idx, valid_mask), both ``[*b, N, K]``: K = max(1, largest neighbour count over
        all atoms and batch elements); padding slots hold index 0 and valid False.
    """
    if tok_idx.is_floating_point() or tok_idx.dtype == torch.bool:
        raise TypeError(f"tok_idx must be an integer tensor, got {tok_idx.dtype}")
    half = window_size // 2
    tok = tok_idx.long()
    if atom_mask is not None:  # a shared [N] token index with a per-example [B, N] mask
        tok = tok.expand(torch.broadcast_shapes(tok.shape, atom_mask.shape))
    n = tok.shape[-1]
    batch_shape = tok.shape[:-1]
    flat = tok.reshape(-1, n)
    rows = flat.shape[0]
    device = tok.device
    if atom_mask is None:
        live = torch.ones_like(flat, dtype=torch.bool)
    else:
        live = atom_mask.to(torch.bool, copy=False).expand(tok.shape).reshape(rows, n)
    if n == 0 or rows == 0:
        empty = torch.zeros(*batch_shape, n, 1, dtype=torch.long, device=device)
        return empty, empty.bool()
    # Masked atoms get a token past every live window, so binary searches never reach them.
    sentinel = flat.max() + max(half, 0) + 1
    key = torch.where(live, flat, sentinel)
    sorted_key, perm = torch.sort(key, dim=-1, stable=True)
    # |t_l − t_m| < h  ⇔  t_m ∈ [t_l − h + 1, t_l + h − 1]  (integers)
    start = torch.searchsorted(sorted_key, key - (half - 1), right=False)
    end = torch.searchsorted(sorted_key, key + (half - 1), right=True)
    count = torch.where(live, (end - start).clamp(min=0), torch.zeros_like(start))
    k = max(1, int(count.max()))
    slots = torch.arange(k, device=device)
    valid = slots < count[..., None]  # [rows, n, k]
    pos = torch.where(valid, start[..., None] + slots, torch.zeros_like(start[..., None]))
    neighbor = torch.gather(perm, 1, pos.reshape(rows, n * k)).reshape(rows, n, k)
    neighbor = torch.where(valid, neighbor, torch.zeros_like(neighbor))
    return neighbor.reshape(*batch_shape, n, k), valid.reshape(*batch_shape, n, k)


def gather_neighbors(x: Float[Tensor, "B N *c"], neighbor_idx: Int[Tensor, "*b N K"]) -> Tensor:
    """``out[b, l, k] = x[b, neighbor_idx[(b,) l, k]]``: ``[B, N, K, *c]`` from a shared ``[N, K]``
    or a per-example ``[B, N, K]`` index."""
    if neighbor_idx.dim() == 2:
        return x[:, neighbor_idx]
    batch = torch.arange(x.shape[0], device=x.device)[:, None, None]
    return x[batch, neighbor_idx]


def _gather_heads(x: Float[Tensor, "B H N D"], neighbor_idx: Int[Tensor, "*b N K"]) -> Tensor:
    """``[B, H, N, K, D]`` neighbour copies of a heads-first tensor."""
    if neighbor_idx.dim() == 2:
        return x[:, :, neighbor_idx]
    batch = torch.arange(x.shape[0], device=x.device)[:, None, None, None]
    heads = torch.arange(x.shape[1], device=x.device)[None, :, None, None]
    return x[batch, heads, neighbor_idx[:, None]]


def _gather_tokens(x: Float[Tensor, "B R *c"], tok: Int[Tensor, "B N"]) -> Tensor:
    """Per-atom copy of token features: ``[B, N, *c]``."""
    batch = torch.arange(x.shape[0], device=x.device)[:, None]
    return x[batch, tok]


def _token_index(tok_idx: Tensor, batch: int, n_res: int | None) -> Tensor:
    tok = tok_idx.long().expand(batch, tok_idx.shape[-1])
    return tok if n_res is None else tok.clamp(0, max(n_res - 1, 0))


def _pair_mlp(dim: int) -> nn.Sequential:
    """AF3's three-layer pair MLP (Alg. 5 line 14), applied as a residual: p += mlp(p)."""
    return nn.Sequential(
        nn.ReLU(), LinearNoBias(dim, dim, init="relu"),
        nn.ReLU(), LinearNoBias(dim, dim, init="relu"),
        nn.ReLU(), LinearNoBias(dim, dim),
    )  # fmt: skip


class AtomTransformerBlock(nn.Module):
    """One pre-LayerNorm block: multi-head attention over each atom's K window neighbours with a
    per-head pair bias, conditioned on the atom context c, then a 4× feed-forward.

    ``x = LN_q(q) + LN_c(c)``; ``q += to_out(attn(x))``; ``q += ff2(SiLU(ff1(LN_ff(q))))``, with
    scores ``[B, n_heads, N, K]`` (O(N·K), never O(N²)) and the bias ``pair_bias(LN_pair(p))``.
    Slots with ``valid_mask`` False get zero weight; an atom with no valid slot gets no update
    from attention.

    Weight shapes (in → out): to_q/to_k/to_v/to_out [c_atom, c_atom]; pair_bias
    [c_atompair, n_heads]; ff1 [c_atom, 4 c_atom]; ff2 [4 c_atom, c_atom]; all without bias.
    """

    def __init__(self, c_atom: int, c_atompair: int, n_heads: int, window_size: int = WINDOW_SIZE):
        super().__init__()
        if c_atom % n_heads:
            raise ValueError(f"c_atom={c_atom} is not divisible by n_heads={n_heads}")
        self.n_heads = n_heads
        self.head_dim = c_atom // n_heads
        self.window_size = window_size
        self.norm_q = nn.LayerNorm(c_atom)
        self.norm_c = nn.LayerNorm(c_atom)
        self.norm_pair = nn.LayerNorm(c_atompair)
        self.norm_ff = nn.LayerNorm(c_atom)
        self.to_q = LinearNoBias(c_atom, c_atom, init="glorot")
        self.to_k = LinearNoBias(c_atom, c_atom, init="glorot")
        self.to_v = LinearNoBias(c_atom, c_atom, init="glorot")
        self.to_out = LinearNoBias(c_atom, c_atom)
        self.pair_bias = LinearNoBias(c_atompair, n_heads)
        self.ff1 = LinearNoBias(c_atom, 4 * c_atom, init="relu")
        self.ff2 = LinearNoBias(4 * c_atom, c_atom)

    def forward(
        self,
        q: Float[Tensor, "B N c_atom"],
        c: Float[Tensor, "B N c_atom"],
        p: Float[Tensor, "B N K c_atompair"],
        neighbor_idx: Int[Tensor, "*b N K"],
        valid_mask: Bool[Tensor, "*b N K"],
    ) -> Float[Tensor, "B N c_atom"]:
        b, n, _ = q.shape
        h, d = self.n_heads, self.head_dim
        x = self.norm_q(q) + self.norm_c(c)
        # Heads-first layout [B, H, N, ·] so both products are batched (1 × D)(D × K) matmuls.
        qh = (self.to_q(x) * d**-0.5).view(b, n, h, d).transpose(1, 2)
        k_nbr = _gather_heads(self.to_k(x).view(b, n, h, d).transpose(1, 2), neighbor_idx)  # [B, H, N, K, D]
        v_nbr = _gather_heads(self.to_v(x).view(b, n, h, d).transpose(1, 2), neighbor_idx)
        scores = (qh[..., None, :] @ k_nbr.transpose(-1, -2))[..., 0, :]  # [B, H, N, K]
        scores = scores + self.pair_bias(self.norm_pair(p)).permute(0, 3, 1, 2)
        mask = valid_mask.to(torch.bool)
        mask = mask[None, None] if mask.dim() == 2 else mask[:, None]  # [B|1, 1, N, K]
        scores = scores.masked_fill(~mask, torch.finfo(scores.dtype).min)
        weights = torch.softmax(scores, dim=-1) * mask  # rows with no valid slot → 0
        out = (weights.to(v_nbr.dtype)[..., None, :] @ v_nbr)[..., 0, :]  # [B, H, N, D]
        out = out.transpose(1, 2).reshape(b, n, h * d)
        q = q + self.to_out(out)
        return q + self.ff2(nn.functional.silu(self.ff1(self.norm_ff(q))))


class AtomTransformer(nn.Module):
    """``n_blocks`` :class:`AtomTransformerBlock` s sharing one sparse neighbour index."""

    def __init__(
        self,
        c_atom: int,
        c_atompair: int,
        n_blocks: int = 3,
        n_heads: int = 4,
        window_size: int = WINDOW_SIZE,
    ):
        super().__init__()
        self.window_size = window_size
        self.blocks = nn.ModuleList(
            AtomTransformerBlock(c_atom, c_atompair, n_heads, window_size) for _ in range(n_blocks)
        )

    def forward(
        self,
        q: Float[Tensor, "B N c_atom"],
        c: Float[Tensor, "B N c_atom"],
        p: Float[Tensor, "B N K c_atompair"],
        neighbor_idx: Int[Tensor, "*b N K"],
        valid_mask: Bool[Tensor, "*b N K"],
    ) -> Float[Tensor, "B N c_atom"]:
        for block in self.blocks:
            q = block(q, c, p, neighbor_idx, valid_mask)
        return q


class AtomFeatureEncoder(nn.Module):
    """Per-atom reference features → per-residue embeddings (AF3 Alg. 5, sparse pairs).

    ``c_l = proj_fref_c([ref_pos, ref_element])``; sparse pair features from the reference offsets
    d_lm (only within one ``ref_space_uid``: v_lm), 1/(1+|d_lm|²) and v_lm; trunk conditioning
    ``c_l += proj_s_init(LN(s))[tok]``, ``p += proj_z_init(LN(z))[tok_l, tok_m]`` (projected at
    residue level, then gathered), ``q_l += proj_r_scaled(r_scaled)``; ``p += proj_cl_pair(relu c_l)
    + proj_cm_pair(relu c_m)``; ``p += mlp_p(p)``; ``q = AtomTransformer(q, c, p)``; residue
    embedding = mean over the residue's atoms of ``relu(proj_agg(q_l))``.

    ``s_input``, ``z_input`` and ``r_scaled`` may be None (the trunk-free first pass of AF3).
    Weight shapes (in → out) as documented: proj_fref_c [f_ref_dim, m], proj_d_vec [3, d],
    proj_inv_sq [1, d], proj_v [1, d], proj_cl_pair/proj_cm_pair [m, d], proj_r_scaled [3, m],
    proj_s_init [c_token, m], proj_z_init [c_pair, d], mlp_p layers [d, d], proj_agg [m, c].
    """

    def __init__(
        self,
        f_ref_dim: int,
        c_token: int,
        c_pair: int,
        c: int,
        d: int,
        m: int,
        n_blocks: int,
        n_heads: int,
        window_size: int = WINDOW_SIZE,
    ):
        super().__init__()
        self.m = m
        self.window_size = window_size
        self.proj_fref_c = LinearNoBias(f_ref_dim, m)
        self.proj_d_vec = LinearNoBias(3, d)
        self.proj_inv_sq = LinearNoBias(1, d)
        self.proj_v = LinearNoBias(1, d)
        self.proj_cl_pair = LinearNoBias(m, d, init="relu")
        self.proj_cm_pair = LinearNoBias(m, d, init="relu")
        self.proj_r_scaled = LinearNoBias(3, m)
        self.norm_s_init = nn.LayerNorm(c_token)
        self.proj_s_init = LinearNoBias(c_token, m)
        self.norm_z_init = nn.LayerNorm(c_pair)
        self.proj_z_init = LinearNoBias(c_pair, d)
        self.mlp_p = _pair_mlp(d)
        self.transformer = AtomTransformer(m, d, n_blocks, n_heads, window_size)
        self.proj_agg = LinearNoBias(m, c, init="relu")
        self.f_ref_dim = f_ref_dim

    def forward(
        self,
        ref_pos: Float[Tensor, "B N 3"],
        ref_element: Float[Tensor, "B N E"],
        ref_space_uid: Int[Tensor, "B N"],
        s_input: Float[Tensor, "B R c_token"] | None,
        z_input: Float[Tensor, "B R R c_pair"] | None,
        r_scaled: Float[Tensor, "B N 3"] | None,
        tok_idx: Int[Tensor, "*b N"],
        atom_mask: Bool[Tensor, "*b N"] | None = None,
        n_res: int | None = None,
    ) -> tuple[Tensor, Tensor, Tensor, Tensor, Tensor]:
        """Returns ``(s_i [B, R, c], q_skip [B, N, m], c_skip [B, N, m], p_skip [B, N, K, d],
        c_l [B, N, m])``. R is ``s_input.shape[1]``, else ``n_res``, else ``max(tok_idx) + 1``."""
        b, n, _ = ref_pos.shape
        f_ref = torch.cat([ref_pos, ref_element.to(ref_pos.dtype)], dim=-1)
        if f_ref.shape[-1] != self.f_ref_dim:
            raise ValueError(
                f"ref_pos + ref_element give {f_ref.shape[-1]} features, expected {self.f_ref_dim}"
            )
        if s_input is not None:
            n_res = s_input.shape[1]
        elif z_input is not None:
            n_res = z_input.shape[1]
        elif n_res is None:
            n_res = int(tok_idx.max()) + 1 if tok_idx.numel() else 0
        idx, valid = build_sparse_pairs(tok_idx, self.window_size, atom_mask)
        tok = _token_index(tok_idx, b, n_res)

        c_l = self.proj_fref_c(f_ref)
        d_lm = ref_pos[:, :, None, :] - gather_neighbors(ref_pos, idx)  # [B, N, K, 3]
        same = ref_space_uid[:, :, None] == gather_neighbors(ref_space_uid, idx)
        v_lm = (same & valid).to(ref_pos.dtype)[..., None]
        p = self.proj_d_vec(d_lm) * v_lm
        p = p + self.proj_inv_sq(1.0 / (1.0 + (d_lm * d_lm).sum(-1, keepdim=True))) * v_lm
        p = p + self.proj_v(v_lm) * v_lm
        q_l = c_l
        if s_input is not None:
            c_l = c_l + _gather_tokens(self.proj_s_init(self.norm_s_init(s_input)), tok)
        if z_input is not None:
            z_proj = self.proj_z_init(self.norm_z_init(z_input))  # [B, R, R, d]
            batch = torch.arange(b, device=z_proj.device)[:, None, None]
            p = p + z_proj[batch, tok[:, :, None], gather_neighbors(tok, idx)]
        if r_scaled is not None:
            q_l = q_l + self.proj_r_scaled(r_scaled)
        relu_c = torch.relu(c_l)
        p = p + self.proj_cl_pair(relu_c)[:, :, None] + gather_neighbors(self.proj_cm_pair(relu_c), idx)
        p = p + self.mlp_p(p)
        q_l = self.transformer(q_l, c_l, p, idx, valid)

        # Mean over each residue's (live) atoms: O(N) scatter, no [R, N] matrix.
        a = torch.relu(self.proj_agg(q_l))
        live = torch.ones(b, n, dtype=a.dtype, device=a.device)
        if atom_mask is not None:
            live = live * atom_mask.to(a.dtype).expand(b, n)
        where = (torch.arange(b, device=a.device)[:, None].expand(b, n), tok)
        s_i = a.new_zeros(b, n_res, a.shape[-1]).index_put_(where, a * live[..., None], accumulate=True)
        counts = a.new_zeros(b, n_res).index_put_(where, live, accumulate=True)
        s_i = s_i / counts.clamp(min=1.0)[..., None]
        return s_i, q_l, c_l, p, c_l


class AtomAttentionDecoder(nn.Module):
    """Trunk embeddings → per-atom position updates, over the encoder's sparse pairs.

    ``q = q_skip + proj_s_q(LN(s))[tok]``; ``c_out = c + proj_s_c(LN(s))[tok]``;
    ``p = p_skip + proj_z(LN(z))[tok_l, tok_m]``; ``p += mlp_p(p)``;
    ``q = AtomTransformer(q, c_out + c_skip, p)``; ``r_update = proj_r(LN(q))``.
    The neighbour index is rebuilt from ``tok_idx`` (and ``atom_mask``), so it matches the
    encoder's; a K that differs from ``p_skip``'s raises ValueError. Returning ``c_out`` (without
    c_skip) lets decoders be chained: the next one takes ``c = c_out`` and the same skips.

    Weight shapes (in → out): proj_s_q/proj_s_c [c_token, c_atom], proj_z [c_pair, c_atompair],
    proj_r [c_atom, 3], mlp_p layers [c_atompair, c_atompair]; all without bias.
    """

    def __init__(
        self,
        c_token: int,
        c_pair: int,
        c_atom: int,
        c_atompair: int,
        n_blocks: int = 3,
        n_heads: int = 4,
        window_size: int = WINDOW_SIZE,
    ):
        super().__init__()
        self.window_size = window_size
        self.norm_s_q = nn.LayerNorm(c_token)
        self.proj_s_q = LinearNoBias(c_token, c_atom)
        self.norm_s_c = nn.LayerNorm(c_token)
        self.proj_s_c = LinearNoBias(c_token, c_atom)
        self.norm_z = nn.LayerNorm(c_pair)
        self.proj_z = LinearNoBias(c_pair, c_atompair)
        self.mlp_p = _pair_mlp(c_atompair)
        self.transformer = AtomTransformer(c_atom, c_atompair, n_blocks, n_heads, window_size)
        self.norm_q_out = nn.LayerNorm(c_atom)
        self.proj_r = LinearNoBias(c_atom, 3)

    def forward(
        self,
        q_skip: Float[Tensor, "B N c_atom"],
        p_skip: Float[Tensor, "B N K c_atompair"],
        c_skip: Float[Tensor, "B N c_atom"],
        c: Float[Tensor, "B N c_atom"],
        s: Float[Tensor, "B R c_token"],
        z: Float[Tensor, "B R R c_pair"],
        tok_idx: Int[Tensor, "*b N"],
        atom_mask: Bool[Tensor, "*b N"] | None = None,
    ) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        """Returns ``(q [B, N, c_atom], p [B, N, K, c_atompair], r_update [B, N, 3],
        c_out [B, N, c_atom])``."""
        b = q_skip.shape[0]
        idx, valid = build_sparse_pairs(tok_idx, self.window_size, atom_mask)
        if idx.shape[-1] != p_skip.shape[-2]:
            raise ValueError(
                f"p_skip has K={p_skip.shape[-2]} slots but tok_idx gives K={idx.shape[-1]}: "
                "pass the encoder's tok_idx, atom_mask and window_size"
            )
        tok = _token_index(tok_idx, b, s.shape[1])
        q = q_skip + _gather_tokens(self.proj_s_q(self.norm_s_q(s)), tok)
        c_out = c + _gather_tokens(self.proj_s_c(self.norm_s_c(s)), tok)
        z_proj = self.proj_z(self.norm_z(z))
        batch = torch.arange(b, device=z_proj.device)[:, None, None]
        p = p_skip + z_proj[batch, tok[:, :, None], gather_neighbors(tok, idx)]
        p = p + self.mlp_p(p)
        q = self.transformer(q, c_out + c_skip, p, idx, valid)
        r_update = self.proj_r(self.norm_q_out(q))
        return q, p, r_update, c_out
