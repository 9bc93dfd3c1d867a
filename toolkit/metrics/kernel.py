"""The compiled CPU search kernel ``ptk._tmsearch`` and the choice of search backend.

On CPU the search of :func:`~ptk.metrics.superposition_search` runs by default in a compiled
kernel (``_tmsearch.c``, built with the package, called through ctypes), one pair at a time with
the pair's residues in cache, pairs spread over ``torch.get_num_threads()`` threads: the same
superpositions and the same maxima, many times faster than tensor operations on a CPU. The torch
path (:mod:`ptk.metrics.search`) serves GPUs, and CPUs where the kernel was not built
(``backend=`` chooses; ``PTK_TMSEARCH=torch`` sets the default).
"""

from __future__ import annotations

import ctypes
import functools
import importlib.util
import logging
import os
from concurrent.futures import ThreadPoolExecutor

import torch
from torch import Tensor

from ptk.metrics.parameters import GDT_CUTOFFS

log = logging.getLogger(__name__)

__all__ = ["native_search_available", "search_backend", "native_search"]


@functools.cache
def _native_kernel():
    """The compiled search (``ptk_tm_search`` of ``_tmsearch.c``), or None where it was not built."""
    spec = importlib.util.find_spec("ptk._tmsearch")
    if spec is None or spec.origin is None:
        log.info("ptk._tmsearch was not built (no C compiler at install?): searching with torch on CPU")
        return None
    try:
        library = ctypes.CDLL(spec.origin)
    except OSError as exc:
        log.warning("ptk._tmsearch could not be loaded (%s): searching with torch on CPU", exc)
        return None
    kernel = library.ptk_tm_search
    kernel.restype = ctypes.c_int
    p, i64 = ctypes.c_void_p, ctypes.c_int64
    kernel.argtypes = [i64, p, p, i64, p, p, p, p, i64, p, p, p]
    return kernel


def native_search_available() -> bool:
    """Whether the compiled CPU search kernel is there (see the module doc)."""
    return _native_kernel() is not None


def search_backend(device: torch.device | str) -> str:
    """The search :func:`~ptk.metrics.superposition_search` runs by default on ``device``: ``"native"`` on
    CPU where the kernel was built (unless ``PTK_TMSEARCH=torch``), ``"torch"`` otherwise."""
    if torch.device(device).type != "cpu" or os.environ.get("PTK_TMSEARCH", "") == "torch":
        return "torch"
    return "native" if native_search_available() else "torch"


def native_search(
    x: Tensor, y: Tensor, n: Tensor, inv_d0sq: Tensor, norm: Tensor, cut: Tensor, seed_step: int
) -> tuple[Tensor, Tensor]:
    """The search of :func:`~ptk.metrics.search._search_chunk` in the compiled kernel: ``x``,
    ``y`` ``[b, m, 3]`` centred common residues first (:func:`~ptk.metrics.search._compact`),
    ``n`` [b] their counts, ``cut`` [b, 2, 2].
    Groups of pairs run on ``torch.get_num_threads()`` threads (the kernel releases the GIL).
    Returns (best TM [b], best GDT counts [b, 5])."""
    kernel = _native_kernel()
    b, stride = x.shape[0], x.shape[1]
    x, y = x.to(torch.float64).contiguous(), y.to(torch.float64).contiguous()
    n = n.to(torch.int64).contiguous()
    inv_d0sq, norm = inv_d0sq.to(torch.float64).contiguous(), norm.to(torch.float64).contiguous()
    cut = cut.to(torch.float64).contiguous()
    best_tm = torch.zeros(b, dtype=torch.float64)
    best_counts = torch.zeros(b, len(GDT_CUTOFFS), dtype=torch.int64)
    states = torch.zeros(b, dtype=torch.int64)

    def run(start: int, stop: int) -> int:
        address = lambda t: t[start:stop].data_ptr()  # noqa: E731
        return kernel(
            stop - start, address(x), address(y), stride, address(n), address(inv_d0sq), address(norm),
            address(cut), seed_step, address(best_tm), address(best_counts), address(states),
        )  # fmt: skip

    threads = max(1, min(torch.get_num_threads(), b))
    if threads == 1:
        codes = [run(0, b)]
    else:
        # Small groups, handed out as threads free up: pairs of different lengths even out.
        step = max(1, b // (8 * threads))
        with ThreadPoolExecutor(threads) as pool:
            codes = list(pool.map(lambda start: run(start, min(b, start + step)), range(0, b, step)))
    if any(codes):
        raise MemoryError("ptk._tmsearch: out of memory")
    return best_tm, best_counts
