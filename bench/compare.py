"""Turns bench_models.py's pytest-benchmark JSON into ONE markdown table of ratios (for the README).

    python3 bench/compare.py /tmp/e2e.json [/tmp/e2e_run2.json ...] [--rss /tmp/e2e_rss.json]

Several JSON files (repeated runs): each time is the median over the runs of the per-run median; each ratio is
the median over the runs of the per-run ratio (the engines of one run were timed in the same seconds, so a run
caught in a slow spell of the machine moves both sides of its ratio; medians of times taken across runs would not
cancel it). The best configurations are picked by the median times.
Rows: model x batch x threads. Cells: batch 1 -> p50 latency in ms (p95 in brackets); larger batch ->
throughput in samples/s. "best ORT" is the fastest of ort_fp32 / ort_fp32_spin / ort_int8_dyn / ort_int8_qdq,
named in the cell; "torch" the faster of torch_fp32 / torch_dynq. Ratios are time(peer) / time(slimrt): > 1 means
slimrt is faster. "best vs best ORT" compares slimrt's faster variant with the fastest ORT config; "fp32 vs ORT
fp32" compares the fp32 engines alone (ORT: the faster of spinning on/off).

Peak memory (optional): ``python3 bench/compare.py --measure-rss /tmp/e2e_rss.json`` runs every engine on every
model in its own subprocess (threads 1, batch 1 then the throughput batch, 3 calls each) and records its peak RSS (VmHWM);
the slimrt child imports only slimrt + numpy and loads a saved ``.slim`` file, the ORT child only onnxruntime +
numpy, the torch child torch (it has to build the module). Pass the file with ``--rss`` to add a column.
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
from collections import defaultdict

ORT = ["ort_fp32", "ort_fp32_spin", "ort_int8_dyn", "ort_int8_qdq"]
TORCH = ["torch_fp32", "torch_dynq"]
MODEL_ORDER = ["mlp", "lenet5", "resnet18", "mobilenetv2", "xception", "transformer"]


def load(paths):
    """{(model, batch, threads): {engine: {"median": s, "p50": ms, "p95": ms}}} (median over files)."""
    acc = defaultdict(lambda: defaultdict(list))
    per_run = defaultdict(lambda: defaultdict(dict))  # key -> engine -> {run index: median s}
    notes = {}
    for run, p in enumerate(paths):
        with open(p) as f:
            doc = json.load(f)
        for b in doc["benchmarks"]:
            info = b.get("extra_info", {})
            if "engine" not in info or "model" not in info:
                continue
            key = (info["model"], info["batch"], info["threads"])
            acc[key][info["engine"]].append((b["stats"]["median"], info.get("p50_ms"), info.get("p95_ms")))
            per_run[key][info["engine"]][run] = b["stats"]["median"]
            if info.get("note"):
                notes[(info["model"], info["engine"])] = info["note"]
    out = {}
    for key, engines in acc.items():
        out[key] = {e: {"median": statistics.median(v[0] for v in vals),
                        "p50": statistics.median(v[1] for v in vals if v[1] is not None),
                        "p95": statistics.median(v[2] for v in vals if v[2] is not None),
                        "runs": len(vals), "per_run": per_run[key][e]}
                    for e, vals in engines.items()}
    return out, notes


def _cell(r, batch):
    if r is None:
        return "n/a"
    if batch == 1:
        return f"{r['p50']:.3g} ms ({r['p95']:.3g})"
    return f"{batch / r['median']:,.0f}/s"


def _best(engines, names):
    have = [(engines[n]["median"], n) for n in names if n in engines]
    return min(have)[1] if have else None


def _rss_cell(rss, model, batch, engines):
    parts = []
    for e in engines:
        e = "ort_fp32" if e == "ort_fp32_spin" else e  # measured once: spinning does not change memory
        v = rss.get(f"{model}/{e}/{batch}") if e else None
        parts.append(f"{v['peak_mb']:.0f}" if v else "-")
    return " / ".join(parts)


def table(results, notes, rss=None) -> str:
    head = ["model", "batch", "thr", "slimrt fp32", "slimrt int8 (dynamic)", "slimrt int8 (static)",
            "best ORT (config)", "best vs best ORT",
            "fp32 vs ORT fp32", "torch (best)", "best vs torch"]
    if rss:
        head.append("peak RSS MB slimrt/ORT/torch")
    lines = ["| " + " | ".join(head) + " |", "|" + "|".join("---" for _ in head) + "|"]
    keys = sorted(results, key=lambda k: (MODEL_ORDER.index(k[0]) if k[0] in MODEL_ORDER else 99, k[1], k[2]))
    for model, batch, threads in keys:
        eng = results[(model, batch, threads)]
        s_best = _best(eng, ["slimrt_fp32", "slimrt_int8", "slimrt_int8s"])
        o_best = _best(eng, ORT)
        o_fp32 = _best(eng, ["ort_fp32", "ort_fp32_spin"])
        t_best = _best(eng, TORCH)

        def ratio(peer, ours):
            if peer is None or ours is None:
                return "n/a"
            a, b = eng[peer]["per_run"], eng[ours]["per_run"]
            runs = [r for r in a if r in b]
            return f"**{statistics.median(a[r] / b[r] for r in runs):.2f}x**"

        short = {"ort_fp32": "fp32", "ort_fp32_spin": "fp32 spin", "ort_int8_dyn": "int8 dyn",
                 "ort_int8_qdq": "int8 QDQ", "torch_fp32": "fp32", "torch_dynq": "dyn-q"}
        row = [model, str(batch), str(threads), _cell(eng.get("slimrt_fp32"), batch),
               _cell(eng.get("slimrt_int8"), batch), _cell(eng.get("slimrt_int8s"), batch),
               f"{_cell(eng.get(o_best), batch)} ({short.get(o_best, '-')})" if o_best else "n/a",
               ratio(o_best, s_best), ratio(o_fp32, "slimrt_fp32" if "slimrt_fp32" in eng else None),
               f"{_cell(eng.get(t_best), batch)} ({short.get(t_best, '-')})" if t_best else "n/a",
               ratio(t_best, s_best)]
        if rss:
            row.append(_rss_cell(rss, model, batch, [s_best, o_best, t_best]))
        lines.append("| " + " | ".join(row) + " |")
    foot = []
    for (model, engine), note in sorted(notes.items()):
        foot.append(f"- {model}, {engine}: {note}")
    return "\n".join(lines) + ("\n\n" + "\n".join(sorted(set(foot))) if foot else "")


# ------------------------------------------------------------------------------------------ peak RSS
def _hwm_mb():
    """Peak resident set of this process (VmHWM; unlike ru_maxrss it is not inherited from the parent over exec)."""
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    raise RuntimeError("no VmHWM in /proc/self/status")


def _rss_child(engine, path, shape, batch):
    """Runs in a fresh interpreter: loads one engine, runs 3 calls, prints peak RSS (MB) as JSON."""
    import numpy as np

    shape = tuple(int(s) for s in shape.split("x"))
    x = np.random.default_rng(0).standard_normal((int(batch),) + shape).astype(np.float32)
    base = _hwm_mb()
    if engine.startswith("slimrt"):
        import slimrt

        sess = slimrt.Session(path, threads=1)
        base = _hwm_mb()
        run = lambda: sess.run(x)  # noqa: E731
    elif engine.startswith("ort"):
        import onnxruntime as ort

        so = ort.SessionOptions()
        so.intra_op_num_threads, so.inter_op_num_threads = 1, 1
        base = _hwm_mb()
        sess = ort.InferenceSession(path, so, providers=["CPUExecutionProvider"])
        run = lambda: sess.run(None, {"x": x})  # noqa: E731
    else:
        import models as M

        M.torch.set_num_threads(1)
        name = os.path.basename(path)
        m = M.spec(name).module if engine == "torch_fp32" else M.torch_dynq(name)
        base = _hwm_mb()

        def run():
            with M.torch.inference_mode():
                return m(M.torch.from_numpy(x))
    for _ in range(3):
        run()
    peak = _hwm_mb()
    print(json.dumps({"peak_mb": peak, "before_session_mb": base}))


def measure_rss(out_path, models, engines):
    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    import models as M

    res = {}
    if os.path.exists(out_path):
        with open(out_path) as f:
            res = json.load(f)
    for name in models:
        spec = M.spec(name)
        shape = "x".join(str(s) for s in spec.shape)
        for engine in engines:
            if engine == "ort_fp32_spin":
                continue
            if engine.startswith("slimrt"):
                path = os.path.join(M.WORKDIR, f"{name}.{engine}.slim")
                if not os.path.exists(path):
                    M.slimrt_model(name, engine.split("_")[1]).save(path, optimize=False)
            elif engine.startswith("ort"):
                path = M.onnx_path(name, {"ort_fp32": "fp32", "ort_int8_dyn": "int8_dyn",
                                          "ort_int8_qdq": "int8_qdq"}[engine])
            else:
                path = name
            for batch in (1, spec.batch_big):
                env = dict(os.environ, SLIMRT_BENCH_DIR=M.WORKDIR)
                p = subprocess.run([sys.executable, os.path.abspath(__file__), "--rss-child", engine, path, shape,
                                    str(batch)], capture_output=True, text=True, env=env)
                if p.returncode != 0:
                    print(f"{name} {engine} batch {batch}: child failed\n{p.stderr[-2000:]}", file=sys.stderr)
                    continue
                res[f"{name}/{engine}/{batch}"] = json.loads(p.stdout.strip().splitlines()[-1])
                print(f"{name:12s} {engine:14s} batch {batch:3d}: peak {res[f'{name}/{engine}/{batch}']['peak_mb']:7.0f}"
                      f" MB", file=sys.stderr)
    with open(out_path, "w") as f:
        json.dump(res, f, indent=1)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("json", nargs="*", help="pytest-benchmark JSON file(s) from bench/bench_models.py")
    ap.add_argument("--rss", help="peak-RSS JSON written by --measure-rss")
    ap.add_argument("--measure-rss", metavar="OUT", help="measure peak RSS per engine and model into OUT")
    ap.add_argument("--models", default=",".join(MODEL_ORDER))
    ap.add_argument("--engines", default="slimrt_fp32,slimrt_int8,slimrt_int8s,ort_fp32,ort_int8_dyn,ort_int8_qdq,torch_fp32,torch_dynq",
                    help="engines for --measure-rss (results merge into an existing OUT)")
    ap.add_argument("--rss-child", nargs=4, metavar=("ENGINE", "PATH", "SHAPE", "BATCH"), help=argparse.SUPPRESS)
    a = ap.parse_args(argv)
    if a.rss_child:
        return _rss_child(*a.rss_child)
    if a.measure_rss:
        return measure_rss(a.measure_rss, a.models.split(","), a.engines.split(","))
    if not a.json:
        ap.error("give at least one pytest-benchmark JSON file")
    results, notes = load(a.json)
    rss = None
    if a.rss:
        with open(a.rss) as f:
            rss = json.load(f)
    print(table(results, notes, rss))


if __name__ == "__main__":
    main()
