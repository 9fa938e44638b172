"""``report``: what compression did to each layer, and to the model's outputs.

``report(model, compressed)`` gives one row (a dict) per compressed weight --
layer, op, weight, shape, format (``"csr(codebook4)"``, ``"int8"``, ...), nnz,
sparsity, bytes, fp32 bytes, ratio, relative L2 error of the decoded weight --
then a ``"total"`` row; with ``eval_data = (x, y)`` the total row also holds
top-1 accuracy before and after (y: integer labels), and with ``(x, None)`` (or
always, when the fp32 outputs are known) the output fidelity: cosine similarity
and max relative error of the compressed model's outputs against the fp32
model's (or against ``reference``, given fp32 outputs from elsewhere).
``format_table(rows)`` renders the rows as a markdown table.
"""
from __future__ import annotations

import json
import warnings

import numpy as np

from ..errors import Error
from ..formats import CSR, Codebook, Dense, Log2, QInt8


def format_name(t) -> str:
    """Short name of a stored tensor's format: fp32, fp16, int8, log2_4, codebook4, csr(codebook4), ..."""
    if isinstance(t, CSR):
        return f"csr({format_name(t.values)})"
    if isinstance(t, Codebook):
        return f"codebook{t.bits}"
    if isinstance(t, Log2):
        return f"log2_{t.bits}"
    if isinstance(t, QInt8):
        return "int8"
    if isinstance(t, Dense):
        return {"float32": "fp32", "float16": "fp16"}.get(t.dtype.name, t.dtype.name)
    return type(t).__name__.lower()


def _baseline(model, compressed):
    """The fp32 model whose weights the compressed ones approximate (optimized first if compress did so)."""
    try:
        rec = json.loads(compressed.metadata.get("compression", "{}"))
    except ValueError:
        rec = {}
    return model.optimize() if rec.get("optimize", False) else model


def _base_weight(base, name, shape):
    t = base.constants.get(name)
    transposed = False
    if t is None and name.endswith(".T"):
        t, transposed = base.constants.get(name[:-2]), True
    if t is None:
        return None
    d = t.to_dense().astype(np.float64)
    if transposed or (d.ndim == 2 and len(shape) == 2 and d.shape == tuple(shape)[::-1] and d.shape != tuple(shape)):
        d = d.T
    return d


def run_model(model, x, engine="auto", batch_size=100):
    """Outputs of ``model`` on ``x`` (array or {input: array}), in batches: the C++ runtime when it can
    run the model (engine "auto" / "session"), else the numpy reference executor on the decoded model."""
    from . import decode

    runner = None
    if engine in ("auto", "session"):
        try:
            from ..session import Session

            sess = Session(model)
            runner = sess.run
        except (ImportError, AttributeError, Error) as e:
            if engine == "session":
                raise
            warnings.warn(f"evaluating with the numpy reference executor ({type(e).__name__}: {e})",
                          RuntimeWarning, stacklevel=3)
    if runner is None:
        dec = decode(model)
        runner = dec.run_reference
    if isinstance(x, dict):
        n = len(next(iter(x.values())))
        parts = [runner({k: v[s:s + batch_size] for k, v in x.items()}) for s in range(0, n, batch_size)]
    else:
        n = len(x)
        parts = [runner(x[s:s + batch_size]) for s in range(0, n, batch_size)]
    return [np.concatenate([p[i] for p in parts]) for i in range(len(parts[0]))]


def _fidelity(before, after):
    a = np.concatenate([np.asarray(o, dtype=np.float64).ravel() for o in before])
    b = np.concatenate([np.asarray(o, dtype=np.float64).ravel() for o in after])
    na, nb = np.linalg.norm(a), np.linalg.norm(b)
    cos = float(a @ b / (na * nb)) if na > 0 and nb > 0 else float(na == nb)
    scale = float(np.max(np.abs(a))) if a.size else 0.0
    err = float(np.max(np.abs(a - b))) / scale if scale > 0 else float(np.max(np.abs(b), initial=0.0))
    return cos, err


def report(model, compressed=None, eval_data=None, reference=None, engine="auto", batch_size=100) -> list:
    """Per-layer rows and a total row (see the module docstring).

    model: the fp32 model (or, with ``compressed=None``, the only model to describe);
    compressed: its compressed version; eval_data: ``(x, y)``, ``(x, None)`` or ``x``;
    reference: fp32 outputs on x (a list of arrays, or one array) to compare against instead of
    running ``model``; engine: "auto", "session" or "reference".
    """
    from . import weight_refs

    comp = compressed if compressed is not None else model
    base = _baseline(model, comp) if compressed is not None else None
    rows = []
    for ref in weight_refs(comp):
        t = comp.constants[ref.weight]
        size = t.size
        nnz = t.nnz if isinstance(t, CSR) else size
        err = None
        if base is not None:
            w0 = _base_weight(base, ref.weight, t.shape)
            if w0 is not None and w0.size == size:
                w1 = t.to_dense().astype(np.float64).reshape(w0.shape)
                n0 = np.linalg.norm(w0)
                err = float(np.linalg.norm(w1 - w0) / n0) if n0 > 0 else float(np.linalg.norm(w1))
        rows.append(dict(layer=",".join(n.name for n in ref.nodes), op=ref.op, weight=ref.weight,
                         shape=list(t.shape), format=format_name(t), nnz=int(nnz),
                         sparsity=float(1 - nnz / size) if size else 0.0, bytes=int(t.nbytes),
                         fp32_bytes=int(size * 4), ratio=float(size * 4 / t.nbytes) if t.nbytes else float("inf"),
                         weight_rel_err=err))
    wb = sum(r["bytes"] for r in rows)
    wf = sum(r["fp32_bytes"] for r in rows)
    total = dict(layer="total", op="", weight=f"{len(rows)} weights", shape=[], format="",
                 nnz=sum(r["nnz"] for r in rows), sparsity=float(1 - sum(r["nnz"] for r in rows) / (wf / 4)) if wf else 0.0,
                 bytes=wb, fp32_bytes=wf, ratio=float(wf / wb) if wb else float("inf"), weight_rel_err=None,
                 model_bytes=int(sum(t.nbytes for t in comp.constants.values())),
                 model_fp32_bytes=int(sum(t.size * 4 for t in (base if base is not None else comp).constants.values())))
    if eval_data is not None:
        if isinstance(eval_data, tuple) and len(eval_data) == 2:
            x, y = eval_data
        else:
            x, y = eval_data, None
        after = run_model(comp, x, engine, batch_size)
        if reference is not None:
            before = [np.asarray(reference)] if not isinstance(reference, (list, tuple)) else list(reference)
        elif compressed is not None:
            before = run_model(model, x, engine, batch_size)
        else:
            before = None
        if y is not None:
            y = np.asarray(y).ravel()
            total["accuracy_after"] = float(np.mean(np.argmax(after[0], axis=-1) == y))
            if before is not None:
                total["accuracy_before"] = float(np.mean(np.argmax(before[0], axis=-1) == y))
                total["accuracy_delta"] = total["accuracy_after"] - total["accuracy_before"]
        if before is not None:
            total["cosine"], total["max_rel_err"] = _fidelity(before, after)
        total["eval_samples"] = int(len(next(iter(x.values()))) if isinstance(x, dict) else len(x))
    rows.append(total)
    return rows


def _fmt_bytes(n):
    return f"{n:,}"


def format_table(rows) -> str:
    """A markdown table of ``report`` rows, followed by the model-level metrics of the total row."""
    head = ["layer", "op", "weight", "shape", "format", "sparsity", "bytes", "fp32 bytes", "ratio", "weight err"]
    lines = ["| " + " | ".join(head) + " |", "|" + "|".join("---" if i < 5 else "---:" for i in range(len(head))) + "|"]
    for r in rows:
        shape = "x".join(str(d) for d in r.get("shape", []))
        err = r.get("weight_rel_err")
        cells = [r.get("layer", ""), r.get("op", ""), r.get("weight", ""), shape, r.get("format", ""),
                 f"{100 * r.get('sparsity', 0.0):.1f}%", _fmt_bytes(r.get("bytes", 0)),
                 _fmt_bytes(r.get("fp32_bytes", 0)), f"{r.get('ratio', 0.0):.2f}x",
                 "" if err is None else f"{err:.2e}"]
        if r.get("layer") == "total":
            cells = [f"**{c}**" if c else c for c in cells]
        lines.append("| " + " | ".join(str(c) for c in cells) + " |")
    tot = next((r for r in rows if r.get("layer") == "total"), None)
    if tot is not None:
        extra = []
        if "model_bytes" in tot:
            extra.append(f"all constants: {_fmt_bytes(tot['model_bytes'])} bytes "
                         f"(fp32 {_fmt_bytes(tot['model_fp32_bytes'])})")
        if "accuracy_after" in tot:
            s = f"accuracy: {100 * tot['accuracy_after']:.2f}%"
            if "accuracy_before" in tot:
                s = (f"accuracy: {100 * tot['accuracy_before']:.2f}% -> {100 * tot['accuracy_after']:.2f}% "
                     f"({100 * tot['accuracy_delta']:+.2f} points)")
            extra.append(s)
        if "cosine" in tot:
            extra.append(f"output fidelity: cosine {tot['cosine']:.6f}, max rel. error {tot['max_rel_err']:.3e}")
        if "eval_samples" in tot:
            extra.append(f"evaluated on {tot['eval_samples']} samples")
        if extra:
            lines.append("")
            lines.extend(f"- {e}" for e in extra)
    return "\n".join(lines)
