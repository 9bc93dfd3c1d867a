"""Structures per second: ptk read + geometry vs a bare gemmi read of the same files, same run.

    python benchmarks/read_geometry.py [--data ../shared/data] [--repeats 3]

Prints both rates and their ratio (the figure: how much ptk's reading and geometry cost on top of
gemmi's parse). Single process, torch on one thread, files already in the page cache.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import gemmi
import torch

from ptk import geometry as G
from ptk.structure import read_chains


def bare_read(paths: list[Path]) -> int:
    atoms = 0
    for path in paths:
        structure = gemmi.read_structure(str(path), format=gemmi.CoorFormat.Pdb)
        atoms += structure[0].count_atom_sites()
    return atoms


def read_and_geometry(paths: list[Path]) -> int:
    residues = 0
    for path in paths:
        for chain in read_chains(path).chains:
            pos = torch.from_numpy(chain.positions)
            mask = torch.from_numpy(chain.mask)
            aatype = torch.from_numpy(chain.aatype)
            n, ca, c = pos[:, 0], pos[:, 1], pos[:, 2]
            G.backbone_frames(n, ca, c)
            G.backbone_dihedrals(n, ca, c)
            G.chi_angles(pos, mask, aatype)
            G.contact_map(ca, mask[:, 1])
            residues += len(chain)
    return residues


def rate(fn, paths: list[Path], repeats: int) -> float:
    fn(paths)  # warm caches and lazy imports
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        fn(paths)
        best = min(best, time.perf_counter() - start)
    return len(paths) / best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=Path(__file__).resolve().parents[2] / "shared" / "data")
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    torch.set_num_threads(1)
    paths = sorted((args.data / "cath" / "dompdb").iterdir())
    paths += sorted((args.data / "qfit" / "qfit_models").glob("*.pdb"))
    bare = rate(bare_read, paths, args.repeats)
    ours = rate(read_and_geometry, paths, args.repeats)
    print(f"files: {len(paths)}")
    print(f"bare gemmi read:        {bare:8.1f} structures/s")
    print(f"ptk read + geometry:    {ours:8.1f} structures/s")
    print(f"ratio (ptk / bare):     {ours / bare:8.3f}")


if __name__ == "__main__":
    main()
