"""Benchmark helpers: a summary table per benchmark group.

Each benchmark may record extra_info engine=<name> and flops=<count>. After the run, every
group with an engine named "slimrt" (or "slimrt*") gets one line: the median time and GFLOP/s
of each engine and the ratios peer/slimrt of the medians and of the minima (> 1: slimrt is
faster; the minimum is the steadier figure on a shared machine), slimrt being the fastest of the
group's slimrt* engines (named after the arrow when it is not plain "slimrt").
"""


def pytest_terminal_summary(terminalreporter, exitstatus, config):
    session = getattr(config, "_benchmarksession", None)
    benches = getattr(session, "benchmarks", None) if session else None
    if not benches:
        return
    groups = {}
    for b in benches:
        info = getattr(b, "extra_info", {}) or {}
        engine = info.get("engine")
        if engine is None or getattr(b, "stats", None) is None:
            continue
        groups.setdefault(b.group, {})[engine] = (b.stats.median, info.get("flops"), b.stats.min)
    lines = []
    for group, engines in groups.items():
        ours = {e: v for e, v in engines.items() if e.startswith("slimrt")}
        peers = {e: v for e, v in engines.items() if not e.startswith("slimrt")}
        if not ours or not peers:
            continue
        best = min(ours, key=lambda e: ours[e][0])
        t_ours, _, min_ours = ours[best]
        parts = []
        for e, (t, f, _) in sorted(engines.items()):
            rate = f"{f / t / 1e9:7.1f} GFLOP/s" if f else ""
            parts.append(f"{e} {t * 1e6:9.1f} us {rate}")
        ratios = "  ".join(f"x{t / t_ours:5.2f} (min x{tm / min_ours:5.2f}) vs {e}"
                           for e, (t, _, tm) in sorted(peers.items()))
        who = "" if best == "slimrt" else f"{best}: "
        lines.append(f"{group:<40} {' | '.join(parts)}  ->  {who}{ratios}")
    if lines:
        terminalreporter.write_sep("-", "slimrt vs peers (median [min]; ratio = peer time / slimrt time)")
        for line in lines:
            terminalreporter.write_line(line)
