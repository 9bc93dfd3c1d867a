"""Peak memory and time of Pallatom's sparse windowed atom attention vs a dense N × N masked reference.

    python benchmarks/atom_attention.py                      # CPU, N = 1k … 16k atoms
    python benchmarks/atom_attention.py --device cuda        # GPU (exact allocator peaks)
    python benchmarks/atom_attention.py --sizes 1000 2000 --backward

One :class:`~ptk.models.pallatom.atom_transformer.AtomTransformerBlock` (c_atom 32, c_atompair 16,
4 heads, 32-residue window, 14 atoms per residue: K ≈ 31 × 14 = 434) on one chain of N atoms.
Both paths start from the same sparse inputs (q, c, p [N, K, c_atompair], neighbour index); the
dense reference builds the explicit [N, N] window mask and a dense [N, N, heads] pair bias (the
per-head bias, not the [N, N, c_atompair] pair tensor a dense model would hold: the most generous
dense formulation) and runs full masked attention.

How memory is measured (honest for torch tensors on CPU, where tracemalloc sees nothing):
every (path, N) point runs in a *fresh subprocess*. After the inputs are built the process resets
the kernel's peak-RSS counter (``echo 5 > /proc/self/clear_refs``) and reads ``VmRSS``; after the
warm-up and timed runs it reads ``VmHWM``. The figure is ``VmHWM − VmRSS_before``: the extra
resident memory the path needed at its peak, allocator overheads included. Where clear_refs is not
writable the fallback is ``ru_maxrss`` minus the RSS after setup (an upper bound). On CUDA it is
``torch.cuda.max_memory_allocated()`` after ``reset_peak_memory_stats`` minus the allocation
before the call. Time is the median of ``--repeats`` runs after one warm-up, single-threaded by
default (the machine is shared).
"""

from __future__ import annotations

import argparse
import json
import math
import resource
import statistics
import subprocess
import sys
import time

import torch

from ptk.models.pallatom.atom_transformer import AtomTransformerBlock, build_sparse_pairs

C_ATOM, C_PAIR, HEADS, WINDOW = 32, 16, 4, 32


def _status_kib(key: str) -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(key):
                return int(line.split()[1])
    raise KeyError(key)


def _reset_peak() -> bool:
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        return True
    except OSError:
        return False


def dense_reference(block, q, c, p, idx, valid, tok):
    """Full masked attention with an explicit [N, N] mask and dense [N, N, H] pair bias."""
    b, n, _ = q.shape
    h, d = block.n_heads, block.head_dim
    mask = (tok[:, None] - tok[None, :]).abs() < block.window_size // 2  # [N, N]
    bias_sparse = block.pair_bias(block.norm_pair(p))  # [B, N, K, H]
    bias = torch.zeros(b, n, n, h, dtype=q.dtype, device=q.device)
    rows = torch.arange(n, device=q.device)[:, None].expand_as(idx)
    bias[:, rows[valid], idx[valid]] = bias_sparse[:, valid]
    x = block.norm_q(q) + block.norm_c(c)
    qh = block.to_q(x).view(b, n, h, d) * d**-0.5
    kh = block.to_k(x).view(b, n, h, d)
    vh = block.to_v(x).view(b, n, h, d)
    scores = torch.einsum("blhd,bmhd->blmh", qh, kh) + bias
    scores = scores.masked_fill(~mask[None, :, :, None], torch.finfo(scores.dtype).min)
    weights = torch.softmax(scores, dim=2)
    out = torch.einsum("blmh,bmhd->blhd", weights, vh).reshape(b, n, h * d)
    q = q + block.to_out(out)
    return q + block.ff2(torch.nn.functional.silu(block.ff1(block.norm_ff(q))))


def measure(path: str, n: int, atoms_per_res: int, device: str, repeats: int, backward: bool) -> dict:
    """Runs inside the worker subprocess."""
    torch.manual_seed(0)
    dev = torch.device(device)
    tok = (torch.arange(n, device=dev) // atoms_per_res).long()
    t0 = time.perf_counter()
    idx, valid = build_sparse_pairs(tok, WINDOW)
    index_s = time.perf_counter() - t0
    k = idx.shape[-1]
    block = AtomTransformerBlock(C_ATOM, C_PAIR, HEADS, WINDOW).to(dev)
    q = torch.randn(1, n, C_ATOM, device=dev)
    c = torch.randn(1, n, C_ATOM, device=dev)
    p = torch.randn(1, n, k, C_PAIR, device=dev)
    if backward:
        q.requires_grad_(True)

    def run():
        with torch.set_grad_enabled(backward):
            if path == "sparse":
                out = block(q, c, p, idx, valid)
            else:
                out = dense_reference(block, q, c, p, idx, valid, tok)
            if backward:
                out.square().mean().backward()
            return out

    if dev.type == "cuda":
        torch.cuda.synchronize()
        base = torch.cuda.memory_allocated()
        torch.cuda.reset_peak_memory_stats()
        method = "cuda.max_memory_allocated"
    else:
        base = _status_kib("VmRSS") * 1024
        method = "VmHWM-VmRSS (clear_refs)" if _reset_peak() else "ru_maxrss-VmRSS (upper bound)"
    times = []
    for i in range(repeats + 1):
        if dev.type == "cuda":
            torch.cuda.synchronize()
        t0 = time.perf_counter()
        out = run()
        if dev.type == "cuda":
            torch.cuda.synchronize()
        if i:
            times.append(time.perf_counter() - t0)
        del out
        q.grad = None
        block.zero_grad(set_to_none=True)
    if dev.type == "cuda":
        peak = torch.cuda.max_memory_allocated() - base
    elif method.startswith("VmHWM"):
        peak = _status_kib("VmHWM") * 1024 - base
    else:
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024 - base
    return {"path": path, "n": n, "k": k, "peak_bytes": peak, "time_s": statistics.median(times),
            "index_s": index_s, "method": method}  # fmt: skip


def dense_estimate_bytes(n: int) -> int:
    """Rough dense peak: mask (1 B) + bias, scores, masked copy, softmax (4 × 4 B × H) per pair."""
    return n * n * (1 + 4 * 4 * HEADS)


def _run_worker(args, path: str, n: int) -> dict | None:
    cmd = [sys.executable, __file__, "--worker", path, str(n), "--device", args.device,
           "--atoms-per-res", str(args.atoms_per_res), "--repeats", str(args.repeats),
           "--threads", str(args.threads)] + (["--backward"] if args.backward else [])  # fmt: skip
    res = subprocess.run(cmd, capture_output=True, text=True)
    if res.returncode != 0:
        print(f"  {path} N={n} failed: {res.stderr.strip().splitlines()[-1:]}", file=sys.stderr)
        return None
    return json.loads(res.stdout.strip().splitlines()[-1])


def _slope(points: list[tuple[int, float]]) -> float:
    """Least-squares slope of log(memory) against log(N): 1 = linear, 2 = quadratic."""
    xs = [math.log(n) for n, _ in points]
    ys = [math.log(max(v, 1.0)) for _, v in points]
    mx, my = sum(xs) / len(xs), sum(ys) / len(ys)
    return sum((x - mx) * (y - my) for x, y in zip(xs, ys, strict=True)) / sum((x - mx) ** 2 for x in xs)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[1000, 2000, 4000, 8000, 16000])
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--atoms-per-res", type=int, default=14)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--backward", action="store_true", help="forward + backward (training)")
    parser.add_argument("--dense-max-gb", type=float, default=5.0,
                        help="skip dense points whose estimated peak exceeds this")  # fmt: skip
    parser.add_argument("--worker", nargs=2, metavar=("PATH", "N"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    if args.worker:
        path, n = args.worker[0], int(args.worker[1])
        print(json.dumps(measure(path, n, args.atoms_per_res, args.device, args.repeats, args.backward)))
        return

    mode = "forward+backward" if args.backward else "forward (no_grad)"
    print(f"# AtomTransformerBlock c_atom={C_ATOM} c_atompair={C_PAIR} heads={HEADS} window={WINDOW} "
          f"atoms/res={args.atoms_per_res} device={args.device} threads={args.threads} {mode}")  # fmt: skip
    header = (
        f"{'N':>6} {'K':>4} {'sparse MiB':>11} {'dense MiB':>10} {'dense/sparse':>12} "
        f"{'sparse s':>9} {'dense s':>9} {'t ratio':>8} {'index s':>8} {'sparse MiB/1k atoms':>20}"
    )
    print(header)
    sparse_pts, dense_pts, method = [], [], ""
    for n in args.sizes:
        s = _run_worker(args, "sparse", n)
        d = None
        if dense_estimate_bytes(n) <= args.dense_max_gb * 2**30:
            d = _run_worker(args, "dense", n)
        if s is None:
            continue
        method = s["method"]
        sparse_pts.append((n, s["peak_bytes"]))
        mib = s["peak_bytes"] / 2**20
        if d is not None:
            dense_pts.append((n, d["peak_bytes"]))
            dm = d["peak_bytes"] / 2**20
            line = (
                f"{n:>6} {s['k']:>4} {mib:>11.1f} {dm:>10.1f} {dm / max(mib, 1e-9):>12.1f} "
                f"{s['time_s']:>9.4f} {d['time_s']:>9.4f} {d['time_s'] / s['time_s']:>8.1f} "
            )
        else:
            est = dense_estimate_bytes(n) / 2**30
            note = f"(~{est:.0f} GiB)"
            line = (
                f"{n:>6} {s['k']:>4} {mib:>11.1f} {'skipped':>10} {note:>12} "
                f"{s['time_s']:>9.4f} {'-':>9} {'-':>8} "
            )
        print(line + f"{s['index_s']:>8.4f} {mib / (n / 1000):>20.1f}", flush=True)
    print(f"# memory method: {method}")
    if len(sparse_pts) > 1:
        print(f"# log-log slope of peak memory vs N: sparse {_slope(sparse_pts):.2f}", end="")
        print(f", dense {_slope(dense_pts):.2f}" if len(dense_pts) > 1 else "")
        growth = [f"{b / a:.2f}" for (_, a), (_, b) in zip(sparse_pts, sparse_pts[1:], strict=False)]
        print(f"# sparse memory growth per doubling of N: {', '.join(growth)} (linear = 2.00)")
        if len(dense_pts) > 1:
            growth = [f"{b / a:.2f}" for (_, a), (_, b) in zip(dense_pts, dense_pts[1:], strict=False)]
            print(f"# dense memory growth per doubling of N:  {', '.join(growth)} (quadratic = 4.00)")


if __name__ == "__main__":
    main()
