"""Latency-target width scheduling under a background CPU hog: a trace plotted to a PNG.

    SLIMRT_DEV_CORE=... PYTHONPATH=python python3 bench/scheduler_trace.py --target-ms 0.25 \
        --seconds 12 --hog-start 4 --hog-seconds 4 --out scheduler_trace.png

The bundled Fashion-MNIST CNN is made slimmable (widths 1.0 / 0.75 / 0.5 / 0.25, BN recalibrated)
and served one request at a time. Between --hog-start and --hog-start + --hog-seconds, busy-loop
processes (one per CPU, each ending by itself after its time even if this script dies) compete for
the cores. The plot shows every run's latency against the target and the width chosen.

Engine: ``slimrt.Session(model, latency_target_ms=..., percentile=..., min_width=...)`` (the
runtime's own scheduler) when the Session supports it; otherwise the same control logic
(``slimrt._core.WidthScheduler``) drives one Session per width, timed here with perf_counter.
Needs matplotlib (the ``bench`` extra).
"""
import argparse
import multiprocessing as mp
import os
import time

import numpy as np


def _hog(seconds):
    end = time.monotonic() + seconds
    x = 0
    while time.monotonic() < end:
        x += 1


def _start_hogs(n, seconds):
    ctx = mp.get_context("spawn")
    procs = [ctx.Process(target=_hog, args=(seconds,), daemon=True) for _ in range(n)]
    for p in procs:
        p.start()
    return procs


class _Fallback:
    """WidthScheduler + one Session per extracted width: what the runtime's Session does inside."""

    def __init__(self, sm, widths, target, pct, min_width, threads):
        import slimrt
        from slimrt._native import core
        from slimrt.slimmable import extract_width, widths_of

        self.widths = list(widths)
        floor = max(i for i, w in enumerate(self.widths) if w >= min_width - 1e-9)
        costs = [float(e["macs"]) for e in widths_of(sm)]
        self.sched = core.WidthScheduler(self.widths, target, pct, floor=floor, costs=costs)
        self.sessions = [slimrt.Session(extract_width(sm, w), threads=threads) for w in self.widths]

    def run(self, x):
        i = self.sched.choose()
        t0 = time.perf_counter()
        self.sessions[i].run(x)
        ms = (time.perf_counter() - t0) * 1e3
        self.sched.record(i, ms)
        return self.widths[i], ms

    def stats(self):
        return self.sched.stats()


class _Native:
    def __init__(self, path, target, pct, min_width, threads):
        import slimrt

        self.s = slimrt.Session(path, threads=threads, latency_target_ms=target, percentile=pct,
                                min_width=min_width)

    def run(self, x):
        t0 = time.perf_counter()
        self.s.run(x)
        ms = (time.perf_counter() - t0) * 1e3
        return self.s.last_width if hasattr(self.s, "last_width") else self.s.width, ms

    def stats(self):
        return self.s.stats()


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--target-ms", type=float, default=None,
                    help="latency target (default: 1.3 x the full width's unloaded median)")
    ap.add_argument("--percentile", type=float, default=95.0)
    ap.add_argument("--min-width", type=float, default=0.25)
    ap.add_argument("--seconds", type=float, default=12.0)
    ap.add_argument("--hog-start", type=float, default=4.0)
    ap.add_argument("--hog-seconds", type=float, default=4.0)
    ap.add_argument("--hogs", type=int, default=os.cpu_count() or 2)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--batch", type=int, default=1)
    ap.add_argument("--out", default="scheduler_trace.png")
    ap.add_argument("--engine", choices=["auto", "native", "fallback"], default="auto")
    args = ap.parse_args(argv)

    import inspect
    import tempfile

    import slimrt
    from slimrt.slimmable import extract_width, slim

    data = os.path.join(os.path.dirname(slimrt.__file__), "data")
    model = slimrt.from_keras(os.path.join(data, "fashion_cnn.keras"))
    calib = np.load(os.path.join(data, "fashion_calib1000.npz"))["x"][:128].astype(np.float32)[..., None]
    widths = (1.0, 0.75, 0.5, 0.25)
    sm = slim(model, widths, calib=calib)
    x = np.ascontiguousarray(np.load(os.path.join(data, "fashion_test500.npz"))["x"][:args.batch]
                             .astype(np.float32)[..., None])

    if args.target_ms is None:
        s = slimrt.Session(extract_width(sm, 1.0), threads=args.threads)
        ts = []
        for _ in range(200):
            t0 = time.perf_counter()
            s.run(x)
            ts.append((time.perf_counter() - t0) * 1e3)
        args.target_ms = 1.3 * float(np.median(ts))
    native = "latency_target_ms" in inspect.signature(slimrt.Session.__init__).parameters
    if args.engine == "native" or (args.engine == "auto" and native):
        tmp = tempfile.NamedTemporaryFile(suffix=".slim", delete=False)
        tmp.close()
        sm.save(tmp.name, optimize=False)
        eng = _Native(tmp.name, args.target_ms, args.percentile, args.min_width, args.threads)
        engine = "Session(latency_target_ms=...)"
    else:
        eng = _Fallback(sm, widths, args.target_ms, args.percentile, args.min_width, args.threads)
        engine = "WidthScheduler + per-width Sessions"

    t_start = time.perf_counter()
    hogs = None
    trace = []
    while True:
        now = time.perf_counter() - t_start
        if now >= args.seconds:
            break
        if hogs is None and now >= args.hog_start:
            hogs = _start_hogs(args.hogs, args.hog_seconds)
        w, ms = eng.run(x)
        trace.append((now, w, ms))
    for p in hogs or ():
        p.join(timeout=args.hog_seconds + 5)

    t = np.array([r[0] for r in trace])
    wv = np.array([r[1] for r in trace])
    lat = np.array([r[2] for r in trace])
    hog_on = (t >= args.hog_start) & (t < args.hog_start + args.hog_seconds)
    print(f"engine: {engine}; target {args.target_ms:.3f} ms at p{args.percentile:g}; {len(trace)} runs")
    for name, sel in (("before/after hog", ~hog_on), ("during hog", hog_on)):
        if sel.any():
            print(f"  {name:17s} p50 {np.percentile(lat[sel], 50):.3f} ms  p95 {np.percentile(lat[sel], 95):.3f} ms  "
                  f"misses {np.mean(lat[sel] > args.target_ms):.1%}  mean width {wv[sel].mean():.2f}")
    print("  stats:", eng.stats())

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (a1, a2) = plt.subplots(2, 1, sharex=True, figsize=(10, 6))
    a1.plot(t, lat, ".", ms=2, label="latency")
    a1.axhline(args.target_ms, color="r", lw=1, label=f"target (p{args.percentile:g})")
    a1.axvspan(args.hog_start, args.hog_start + args.hog_seconds, color="0.9", label="CPU hog")
    a1.set_ylabel("ms")
    a1.set_yscale("log")
    a1.legend(loc="upper right")
    a2.step(t, wv, where="post")
    a2.axvspan(args.hog_start, args.hog_start + args.hog_seconds, color="0.9")
    a2.set_ylabel("width")
    a2.set_xlabel("seconds")
    a2.set_yticks(widths)
    fig.suptitle(f"slimrt width scheduling, fashion_cnn batch {args.batch}, {engine}")
    fig.tight_layout()
    fig.savefig(args.out, dpi=110)
    print("wrote", args.out)


if __name__ == "__main__":
    main()
