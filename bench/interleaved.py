"""End-to-end comparison with the engines alternated call by call (the same models and engines as
bench_models.py, the same JSON layout, so ``compare.py`` prints its table from either).

    python3 bench/interleaved.py --json /tmp/e2e_il.json [--models resnet18,xception] [--engines ...]
        [--threads 1,2] [--seconds 4] [--batches 1,big]
    python3 bench/compare.py /tmp/e2e_il.json

Why: bench_models.py times each engine's rounds in one block (pytest-benchmark runs one callable per test),
so on a shared machine whose speed drifts by 10-20% within seconds, two engines of one comparison can be
measured at different speeds. Here every round gives each engine of a (model, threads, batch) one turn, in an
order rotated from round to round, until ``--seconds`` have passed (at least ``--min-rounds`` rounds); the
ratios then compare calls made within the same fraction of a second. A turn is one untimed call (it brings the
engine's weights back into the caches the other engines used) and then timed calls for about ``--turn-ms``
(at least one), so a small model is timed warm, as in bench_models.py. Each engine's output is checked against
torch fp32 first (bench_models.py's tolerances; an engine that fails is reported and left out). p50 / p95 are
over the single-call times; throughput uses the median. ``ort_fp32_spin`` is not in the default engines: its
spinning workers keep the other core busy for a while after each call, which would slow whichever engine runs
next (bench_models.py measures it in a block of its own).
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time

# numpy is no engine here: its OpenBLAS threads, once woken by any BLAS call in the harness, spin on the
# second core after it and slow the next 2-thread engine (Xception static int8, 2 threads: 3.2 vs 1.9 ms).
# Set before numpy loads OpenBLAS; a value given in the environment wins.
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

import numpy as np  # noqa: E402

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import models as M  # noqa: E402


def run_group(model: str, threads: int, batch: int, engines: list[str], seconds: float, min_rounds: int,
              turn_s: float):
    spec = M.spec(model)
    runners, errors = {}, {}
    check_x = spec.input(2, seed=7)
    want = M.reference(model, check_x)
    for e in engines:
        try:
            r = M.make_runner(e, model, threads)
        except ImportError as exc:
            print(f"  skip {e}: {exc}", file=sys.stderr)
            continue
        err = M.rel_error(r(check_x), want)
        if not err <= M.TOL[e]:
            print(f"  {e} on {model}: max rel error {err:.3e} > {M.TOL[e]:g}, left out", file=sys.stderr)
            continue
        runners[e], errors[e] = r, err
    x = spec.input(batch)
    names = list(runners)
    calls = {}
    for e in names:  # warm-up (also sizes slimrt's per-shape plan), then the calls per turn
        runners[e](x)
        t0 = time.perf_counter()
        runners[e](x)
        calls[e] = max(1, int(turn_s / max(time.perf_counter() - t0, 1e-6)))
    times = {e: [] for e in names}
    t_end = time.perf_counter() + seconds
    rnd = 0
    while rnd < min_rounds or time.perf_counter() < t_end:
        for i in range(len(names)):
            e = names[(rnd + i) % len(names)]
            runners[e](x)
            for _ in range(calls[e]):
                t0 = time.perf_counter()
                runners[e](x)
                times[e].append(time.perf_counter() - t0)
        rnd += 1
    out = []
    for e in names:
        d = np.asarray(times[e])
        info = dict(engine=e, model=model, batch=batch, threads=threads, flops=M.flops(spec) * batch,
                    rel_error=errors[e], mode="latency" if batch == 1 else "throughput", rounds=len(d),
                    p50_ms=float(np.percentile(d, 50) * 1e3), p95_ms=float(np.percentile(d, 95) * 1e3),
                    samples_per_s=float(batch / np.median(d)), method="interleaved")
        note = M.note_for(model, e)
        if note:
            info["note"] = note
        out.append({"name": f"{model}-t{threads}-b{batch}-{e}", "group": f"{model} batch={batch} threads={threads}",
                    "stats": {"median": float(np.median(d)), "min": float(d.min()), "rounds": len(d)},
                    "extra_info": info})
    return out


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--json", required=True, help="output file (bench_models.py's layout)")
    ap.add_argument("--models", default=",".join(M.MODELS))
    ap.add_argument("--engines", default=",".join(e for e in M.ENGINES if e != "ort_fp32_spin"))
    ap.add_argument("--threads", default="1,2")
    ap.add_argument("--batches", default="1,big", help="1 and/or big (the model's throughput batch)")
    ap.add_argument("--seconds", type=float, default=4.0, help="per (model, threads, batch)")
    ap.add_argument("--min-rounds", type=int, default=3)
    ap.add_argument("--turn-ms", type=float, default=20.0, help="timed calls per turn: about this long")
    a = ap.parse_args(argv)
    benches = []
    for model in [m for m in a.models.split(",") if m]:
        spec = M.spec(model)
        for threads in [int(t) for t in a.threads.split(",")]:
            engines = [e for e in a.engines.split(",") if e and not (e == "ort_fp32_spin" and threads == 1)]
            for b in a.batches.split(","):
                batch = 1 if b == "1" else spec.batch_big
                print(f"{model} threads={threads} batch={batch}", file=sys.stderr, flush=True)
                benches += run_group(model, threads, batch, engines, a.seconds, a.min_rounds, a.turn_ms / 1e3)
    with open(a.json, "w") as f:
        json.dump({"benchmarks": benches, "method": "interleaved"}, f, indent=1)


if __name__ == "__main__":
    main()
