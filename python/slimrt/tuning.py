"""Host-tuned plans stored in the ``.slim`` file (``slimrt tune``).

``Session(..., tune=True)`` times each node's kernel variants (a compressed layer's native kernel
against its fp32 decoding, ...) when a plan is made and keeps the fastest. ``tune`` does that for
the given batch sizes and stores the choices in the file's metadata under
``tuning/<cpu signature>`` (vendor / CPU brand / ISA / threads). A later ``Session`` on a CPU with
the same signature reuses them without timing anything (``tune`` off is enough); on any other CPU
they are ignored. Record format: ``csrc/runtime/tuning.h``.
"""
from __future__ import annotations

import os

import numpy as np

from . import slimfile
from .errors import InputError
from .session import Session

METADATA_PREFIX = "tuning/"


def random_feeds(sess: Session, batch: int, rng) -> dict:
    """Inputs of the session's shapes with every free dimension set to ``batch``."""
    feeds = {}
    for i in sess.inputs:
        shape = tuple(batch if d is None else d for d in i["shape"])
        if i["dtype"].startswith("int"):
            feeds[i["name"]] = rng.integers(0, 2, size=shape).astype(i["dtype"])
        else:
            feeds[i["name"]] = rng.standard_normal(shape).astype(i["dtype"])
    return feeds


def parse_records(text: str) -> dict:
    out = {}
    for line in text.splitlines():
        k, sep, v = line.partition("\t")
        if sep and k and v:
            out[k] = v
    return out


def format_records(records: dict) -> str:
    return "".join(f"{k}\t{v}\n" for k, v in sorted(records.items()) if "\t" not in k + v and "\n" not in k + v)


def tune(path, batches=(1,), threads: int | None = None, isa: str | None = None, output=None) -> dict:
    """Tunes ``path`` for this CPU at each batch size (and each width of a slimmable model) and
    writes the choices into ``output`` (default: ``path`` itself, replaced atomically).

    Returns ``{"signature", "records", "kernels"}``: the CPU signature, the stored records
    (``"<node>|<input shapes>" -> kernel``) and, per batch, ``(node, op, kernel)`` of the plan.
    """
    path = os.fspath(path)
    batches = [int(b) for b in batches]
    if not batches or min(batches) < 1:
        raise InputError(f"batch sizes must be >= 1, got {batches}")
    sess = Session(path, threads=threads, isa=isa, tune=True)
    rng = np.random.default_rng(0)
    kernels = {}
    for b in batches:
        feeds = random_feeds(sess, b, rng)
        for w in sess.widths or [None]:
            sess.run(feeds, width=w)
        kernels[b] = sess.kernels(*[f.shape for f in feeds.values()])
    records = sess.tuning()
    model = slimfile.load(path)
    key = METADATA_PREFIX + sess.tuning_signature
    merged = parse_records(model.metadata.get(key, ""))
    merged.update(records)
    model.metadata[key] = format_records(merged)
    slimfile.save(model, output or path)
    return {"signature": sess.tuning_signature, "records": merged, "kernels": kernels}
