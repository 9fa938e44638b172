"""Kernels timed side by side without the Python call's own cost (the interleaved modes of
bench_spmm.py and bench_lutgemm.py).

Each engine is a function run(repeat) that calls a kernel binding with run(..., repeat=repeat): the
binding runs the kernel `repeat` times in one call, so its argument checks (~2-3 us a call, the same
for every engine) drop out and what is timed is the kernel. `repeat` is chosen per engine so one call
takes ~block_ms. A block times one call of every engine back to back, the order rotating from block
to block, so the engines of a block see the same machine (on a shared host, bursts of outside load
last from a fraction of a millisecond to about a second).
"""
import time

import numpy as np


def interleave(runs, blocks=41, block_ms=0.5):
    """{name: run(repeat)} -> {name: array of seconds per kernel call, one per block}."""
    reps = {}
    for name, run in runs.items():
        run(1)
        t0 = time.perf_counter()
        run(20)
        reps[name] = max(1, int(block_ms * 1e-3 / ((time.perf_counter() - t0) / 20)))
    names = list(runs)
    times = {name: [] for name in names}
    for b in range(blocks):
        k = b % len(names)
        for name in names[k:] + names[:k]:
            t0 = time.perf_counter()
            runs[name](reps[name])
            times[name].append((time.perf_counter() - t0) / reps[name])
    return {name: np.array(v) for name, v in times.items()}


def ratio(times, num, den):
    """(median over blocks of times[num] / times[den], min(times[num]) / min(times[den])):
    > 1 when `den` is faster."""
    a, b = times[num], times[den]
    return float(np.median(a / b)), float(a.min() / b.min())
