"""The ``slimrt`` command line (also ``python -m slimrt``).

Results go to stdout; progress and errors to stderr. Every error prints one
line ``slimrt: error: ...`` and exits with status 2 (1 for usage errors).
"""
from __future__ import annotations

import argparse
import importlib
import json
import os
import sys
import time

import numpy as np


def _progress(total, desc):
    """A tqdm bar on a terminal, nothing otherwise."""
    if not sys.stderr.isatty():
        return None
    try:
        from tqdm import tqdm
    except ImportError:
        return None
    return tqdm(total=total, desc=desc, file=sys.stderr, leave=False)


def _parse_shape(s):
    try:
        return tuple(int(d) for d in s.replace("x", ",").split(",") if d.strip())
    except ValueError:
        raise SystemExit(f"slimrt: error: bad shape '{s}' (use e.g. 1,3,224,224)")


def load_any(path_or_spec, input_shape=None, state_dict=None):
    """A Model from a .slim, .keras or .h5 file, or a PyTorch ``module:factory`` spec."""
    import slimrt

    spec = str(path_or_spec)
    low = spec.lower()
    if low.endswith(".slim"):
        return slimrt.load(spec)
    if low.endswith(".keras") or low.endswith(".h5") or low.endswith(".hdf5"):
        return slimrt.from_keras(spec)
    if ":" in spec and not os.path.exists(spec):
        mod_name, _, factory = spec.partition(":")
        if not input_shape:
            raise slimrt.InputError("a PyTorch module needs --input-shape (e.g. 1,3,32,32)")
        import torch

        from .frontends.torch import load_state_dict

        sys.path.insert(0, os.getcwd())
        try:
            fn = getattr(importlib.import_module(mod_name), factory)
        except (ImportError, AttributeError) as e:
            raise slimrt.InputError(f"cannot import {spec}: {e}")
        module = fn()
        if state_dict:
            module.load_state_dict(load_state_dict(state_dict))
        return slimrt.from_torch(module.eval(), (torch.randn(*input_shape),))
    raise slimrt.InputError(f"don't know how to read '{spec}': expected .slim, .keras, .h5 or module:factory")


# ---------------------------------------------------------------- commands
def cmd_convert(a):
    import slimrt

    model = load_any(a.model, _parse_shape(a.input_shape) if a.input_shape else None, a.state_dict)
    if not a.no_optimize and hasattr(model, "optimize"):
        model = model.optimize()
    model.save(a.output)
    print(f"wrote {a.output}: {len(model.nodes)} nodes, {len(model.constants)} constants, "
          f"{os.path.getsize(a.output)} bytes")


def _fmt_bytes(n):
    for unit in ("B", "KiB", "MiB", "GiB"):
        if n < 1024 or unit == "GiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024


def inspect_rows(model):
    rows = []
    for name, t in model.constants.items():
        fmt = t.format_name
        if fmt == "csr":
            fmt = f"csr({t.values.format_name})"
        dense = 4 * t.size
        rows.append(dict(name=name, format=fmt, shape=list(t.shape), bytes=t.nbytes, fp32_bytes=dense,
                         ratio=(dense / t.nbytes) if t.nbytes else float("inf")))
    return rows


def cmd_inspect(a):
    import slimrt

    model = slimrt.load(a.file)
    rows = inspect_rows(model)
    total = sum(r["bytes"] for r in rows)
    dense = sum(r["fp32_bytes"] for r in rows)
    if a.json:
        print(json.dumps(dict(
            inputs=[dict(name=i.name, shape=list(i.shape), dtype=i.dtype) for i in model.inputs],
            outputs=model.outputs,
            nodes=[dict(name=n.name, op=n.op, inputs=n.inputs, outputs=n.outputs, attrs=n.attrs) for n in model.nodes],
            tensors=rows, total_bytes=total, fp32_bytes=dense, file_bytes=os.path.getsize(a.file),
            metadata=model.metadata), indent=1, default=str))
        return
    print(f"{a.file}: {os.path.getsize(a.file)} bytes")
    for i in model.inputs:
        print(f"  input  {i.name}: {i.dtype} {tuple('?' if d is None else d for d in i.shape)}")
    for o in model.outputs:
        print(f"  output {o}")
    print(f"\n{len(model.nodes)} nodes:")
    ops = {}
    for n in model.nodes:
        ops[n.op] = ops.get(n.op, 0) + 1
        attrs = ", ".join(f"{k}={v}" for k, v in n.attrs.items())
        print(f"  {n.name:40s} {n.op:16s} ({', '.join(n.inputs)}) {attrs}")
    print("\nop counts: " + ", ".join(f"{k} x{v}" for k, v in sorted(ops.items())))
    print(f"\n{len(rows)} tensors:")
    print(f"  {'name':40s} {'format':18s} {'shape':20s} {'bytes':>10s} {'vs fp32':>8s}")
    for r in rows:
        print(f"  {r['name']:40s} {r['format']:18s} {str(tuple(r['shape'])):20s} {r['bytes']:>10d} "
              f"{r['ratio']:>7.1f}x")
    ratio = dense / total if total else float("inf")
    print(f"\ntotal tensor bytes: {total} ({_fmt_bytes(total)}), fp32 equivalent {dense} "
          f"({_fmt_bytes(dense)}), ratio {ratio:.2f}x")


def _read_inputs(specs, sess):
    names = sess.input_names
    feeds = {}
    for i, s in enumerate(specs):
        if "=" in s and not os.path.exists(s):
            name, _, path = s.partition("=")
        else:
            if i >= len(names):
                raise SystemExit("slimrt: error: more --input files than model inputs")
            name, path = names[i], s
        feeds[name] = np.load(path, allow_pickle=False)
    return feeds


def cmd_run(a):
    import slimrt

    sess = slimrt.Session(a.file, threads=a.threads)
    outs = sess.run(_read_inputs(a.input, sess))
    if a.output:
        if len(outs) == 1:
            np.save(a.output, outs[0])
        else:
            np.savez(a.output, **{n: o for n, o in zip(sess.output_names, outs)})
        print(f"wrote {a.output}")
    for name, o in zip(sess.output_names, outs):
        print(f"{name}: {o.dtype} {o.shape}")
        if not a.output:
            with np.printoptions(precision=5, suppress=True, threshold=200):
                print(o)


def latency_stats(times_s):
    t = np.asarray(times_s) * 1e3
    return dict(p50=float(np.percentile(t, 50)), p95=float(np.percentile(t, 95)),
                p99=float(np.percentile(t, 99)), mean=float(t.mean()), runs=int(t.size))


def time_session(sess, feeds, seconds=2.0, min_runs=10, max_runs=100000, desc=None):
    for _ in range(3):
        sess.run(feeds)
    times = []
    bar = _progress(None, desc) if desc and seconds >= 3 else None
    t_end = time.perf_counter() + seconds
    while len(times) < max_runs and (len(times) < min_runs or time.perf_counter() < t_end):
        t0 = time.perf_counter()
        sess.run(feeds)
        times.append(time.perf_counter() - t0)
        if bar:
            bar.update(1)
    if bar:
        bar.close()
    return times


def cmd_bench(a):
    import slimrt
    from .tuning import random_feeds

    sess = slimrt.Session(a.file, threads=a.threads)
    feeds = random_feeds(sess, a.batch, np.random.default_rng(0))
    times = time_session(sess, feeds, seconds=a.seconds, desc="bench")
    st = latency_stats(times)
    st.update(batch=a.batch, threads=sess.threads, isa=sess.isa,
              throughput=a.batch * 1e3 / st["mean"])
    prof = sess.profile(feeds, runs=max(3, min(st["runs"], 50))) if a.profile else None
    if a.json:
        if prof:
            st["profile"] = prof["rows"][: a.profile]
        print(json.dumps(st))
        return
    print(f"{a.file}: batch {a.batch}, {sess.threads} threads, isa {sess.isa}, {st['runs']} runs")
    print(f"latency ms: p50 {st['p50']:.3f}  p95 {st['p95']:.3f}  p99 {st['p99']:.3f}  mean {st['mean']:.3f}")
    print(f"throughput: {st['throughput']:.1f} samples/s")
    if prof:
        print(f"per node (mean of profiled runs, {prof['ms']:.3f} ms per run):")
        print(f"{'ms':>9} {'%':>6}  {'op':<22} {'kernel':<28} node")
        for r in prof["rows"][: a.profile]:
            print(f"{r['ms']:9.4f} {r['pct']:6.1f}  {r['op']:<22} {r['kernel']:<28} {r['node']}")


def _load_calib(path):
    if path is None:
        return None
    if str(path).endswith(".npz"):
        with np.load(path, allow_pickle=False) as d:
            return {k: d[k] for k in d.files}
    return np.load(path, allow_pickle=False)


def cmd_compress(a):
    from .compress import Recipe, compress, format_table, report

    model = load_any(a.model)
    calib = _load_calib(a.calib)
    if a.recipe:
        recipe = Recipe.from_json(a.recipe)
        out = compress(model, recipe=recipe, calib=calib, progress=not a.quiet)
    else:
        opts = {"calib_method": a.calib_method} if a.calib_method else {}
        if a.attention:
            opts["attention"] = a.attention
        out = compress(model, prune=a.prune, share=a.share, quant=a.quant, calib=calib, seed=a.seed,
                       progress=not a.quiet, **opts)
    out.save(a.output, optimize=False)
    rows = report(model, out)
    print(format_table(rows))
    print(f"wrote {a.output} ({os.path.getsize(a.output)} bytes)")


def width_table(path, eval_data=None, threads=None, seconds=1.0, batch=1):
    """Per width of a slimmable .slim file: MACs, weight bytes, accuracy (from the metadata), latency p50/p95."""
    import slimrt

    from .slimmable import widths_of
    from .tuning import random_feeds

    import types

    sess = slimrt.Session(path, threads=threads)
    feeds = random_feeds(sess, batch, np.random.default_rng(0))
    rows = []
    for e in widths_of(slimrt.load(path)):
        fixed = types.SimpleNamespace(run=lambda f, w=e["width"]: sess.run(f, width=w))  # time one width
        st = latency_stats(time_session(fixed, feeds, seconds=seconds))
        rows.append(dict(width=e["width"], macs=e.get("macs"), bytes=e.get("bytes"), accuracy=e.get("accuracy"),
                         p50=st["p50"], p95=st["p95"]))
    return rows


def cmd_slim(a):
    from .slimmable import slim

    model = load_any(a.model)
    widths = [float(w) for w in a.widths.split(",")]
    calib = _load_calib(a.calib)
    eval_data = None
    if a.eval:
        with np.load(a.eval, allow_pickle=False) as d:
            eval_data = (d["x"], d["y"])
    out = slim(model, widths=widths, calib=calib, eval_data=eval_data, progress=not a.quiet)
    out.save(a.output, optimize=True)
    rows = width_table(a.output, threads=a.threads, seconds=0.5)
    print(f"| width | MACs | weight bytes | accuracy | b=1 p50 ms | b=1 p95 ms |")
    print("|---|---|---|---|---|---|")
    for r in rows:
        acc = "-" if r["accuracy"] is None else f"{100 * r['accuracy']:.1f}%"
        print(f"| {r['width']:.2f} | {r['macs']} | {r['bytes']} | {acc} | {r['p50']:.3f} | {r['p95']:.3f} |")
    print(f"wrote {a.output} ({os.path.getsize(a.output)} bytes)")


def cmd_tune(a):
    from .tuning import tune

    batches = [int(b) for b in a.batch.split(",") if b.strip()]
    r = tune(a.file, batches=batches, threads=a.threads, output=a.output)
    print(f"tuned {a.output or a.file} for {r['signature']}: {len(r['records'])} kernel choice(s) stored")
    for b, rows in r["kernels"].items():
        tuned = [(n, op, k) for n, op, k in rows if any(key.startswith(n + "|") for key in r["records"])]
        for n, op, k in tuned:
            print(f"  batch {b:<4d} {n:32s} {op:10s} {k}")


def cmd_demo(a):
    from . import demo

    demo.run(threads=a.threads, quick=a.quick)


# ---------------------------------------------------------------- main
def build_parser():
    p = argparse.ArgumentParser(prog="slimrt", description="slimrt: import, compress and run models on native kernels.")
    sub = p.add_subparsers(dest="cmd", metavar="COMMAND")

    c = sub.add_parser("convert", help="convert a Keras file or PyTorch module to .slim")
    c.add_argument("model", help="model.keras, model.h5, or a PyTorch factory as module:function")
    c.add_argument("-o", "--output", required=True, help="output .slim file")
    c.add_argument("--input-shape", help="PyTorch only: example input shape, e.g. 1,3,32,32")
    c.add_argument("--state-dict", help="PyTorch only: state dict (.pt) loaded with weights_only=True")
    c.add_argument("--no-optimize", action="store_true", help="skip the graph optimizer")
    c.set_defaults(fn=cmd_convert)

    c = sub.add_parser("inspect", help="list ops, tensors, formats and bytes of a .slim file")
    c.add_argument("file")
    c.add_argument("--json", action="store_true")
    c.set_defaults(fn=cmd_inspect)

    c = sub.add_parser("run", help="run a .slim file on .npy inputs")
    c.add_argument("file")
    c.add_argument("--input", "-i", action="append", required=True, help="x.npy or name=x.npy (repeat per input)")
    c.add_argument("--output", "-o", help="write the output to .npy (several outputs: .npz)")
    c.add_argument("--threads", type=int, default=None)
    c.set_defaults(fn=cmd_run)

    c = sub.add_parser("bench", help="latency percentiles and throughput of a .slim file on random inputs")
    c.add_argument("file")
    c.add_argument("--batch", type=int, default=1)
    c.add_argument("--threads", type=int, default=None)
    c.add_argument("--seconds", type=float, default=3.0)
    c.add_argument("--json", action="store_true")
    c.add_argument("--profile", type=int, nargs="?", const=15, default=0, metavar="N",
                   help="also print the N slowest nodes (default 15) with their kernels")
    c.set_defaults(fn=cmd_bench)

    c = sub.add_parser("compress", help="prune / share / quantize a model and write .slim with a per-layer report")
    c.add_argument("model", help=".slim, .keras or .h5")
    c.add_argument("-o", "--output", required=True)
    c.add_argument("--prune", type=float, help="target sparsity in [0, 1), stored as CSR")
    c.add_argument("--share", type=int, help="k-means codebook entries (2..256)")
    c.add_argument("--quant", choices=["int8", "log2"])
    c.add_argument("--calib", help="calibration inputs (.npy, or .npz by input name)")
    c.add_argument("--calib-method", choices=["minmax", "percentile", "entropy"])
    c.add_argument("--attention", choices=["fp32", "int8"], help="transformers: attention products in int8")
    c.add_argument("--recipe", help="a JSON recipe file (overrides the flags)")
    c.add_argument("--seed", type=int, default=0)
    c.add_argument("--quiet", action="store_true")
    c.set_defaults(fn=cmd_compress)

    c = sub.add_parser("slim", help="make a slimmable model (nested widths in one file) and report each width")
    c.add_argument("model", help=".slim, .keras or .h5")
    c.add_argument("-o", "--output", required=True)
    c.add_argument("--widths", default="1,0.75,0.5,0.25")
    c.add_argument("--calib", help="calibration inputs (.npy) to recalibrate batch norm per width")
    c.add_argument("--eval", help=".npz with x and y: accuracy per width")
    c.add_argument("--threads", type=int, default=None)
    c.add_argument("--quiet", action="store_true")
    c.set_defaults(fn=cmd_slim)

    c = sub.add_parser("tune", help="time each layer's kernel variants on this CPU and store the choices in the file")
    c.add_argument("file")
    c.add_argument("--batch", default="1", help="batch sizes to tune, e.g. 1,64")
    c.add_argument("--threads", type=int, default=None)
    c.add_argument("-o", "--output", help="write a tuned copy here instead of replacing FILE")
    c.set_defaults(fn=cmd_tune)

    c = sub.add_parser("demo", help="the main job on the bundled Fashion-MNIST model")
    c.add_argument("--threads", type=int, default=None)
    c.add_argument("--quick", action="store_true", help="shorter timings")
    c.set_defaults(fn=cmd_demo)
    return p


def main(argv=None):
    parser = build_parser()
    a = parser.parse_args(argv)
    if not getattr(a, "fn", None):
        parser.print_help()
        return 1
    import slimrt

    try:
        a.fn(a)
    except (slimrt.Error, OSError, ValueError) as e:
        print(f"slimrt: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130
    return 0
