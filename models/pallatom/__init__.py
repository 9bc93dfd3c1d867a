"""Pallatom: sparse windowed atom transformers (:mod:`.atom_transformer`); its losses live in
:mod:`ptk.models.losses` with every other loss."""

from ptk.models.pallatom.atom_transformer import (
    WINDOW_SIZE,
    AtomAttentionDecoder,
    AtomFeatureEncoder,
    AtomTransformer,
    AtomTransformerBlock,
    build_sparse_pairs,
    gather_neighbors,
)

__all__ = [
    "WINDOW_SIZE",
    "AtomAttentionDecoder",
    "AtomFeatureEncoder",
    "AtomTransformer",
    "AtomTransformerBlock",
    "build_sparse_pairs",
    "gather_neighbors",
]
