"""Writes seed .slim files for the fuzzer: python tests/fuzz/make_seeds.py OUT_DIR"""
import os
import sys

import numpy as np

sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))
from test_format import all_formats_model, small_model  # noqa: E402

from slimrt import formats as F, slimfile  # noqa: E402
from slimrt.ir import Model  # noqa: E402


def main(out):
    os.makedirs(out, exist_ok=True)
    rng = np.random.default_rng(0)
    models = {"small": small_model(rng), "formats": all_formats_model(rng)}
    m = Model(inputs=[("x", (None, 4, 4, 2))])
    w = rng.standard_normal((3, 18)).astype(np.float32) * (rng.random((3, 18)) < 0.5)
    k = F.CSR.from_dense(w, lambda v, r: F.Codebook(rng.integers(0, 5, v.size), rng.standard_normal((3, 5)), 3,
                                                     axis=0, shape=v.shape, channels=3))
    c = m.add_node("conv2d", ["x", m.add_constant("k", F.Dense(rng.standard_normal((3, 3, 3, 2)).astype(np.float32)))],
                   dict(strides=[1, 1], pads=[1, 1, 1, 1], act="relu"))
    m.outputs = [m.add_node("transpose", [c], dict(perm=[0, 3, 1, 2])), m.add_constant("sparse", k)]
    models["graph"] = m
    for name, model in models.items():
        with open(os.path.join(out, name + ".slim"), "wb") as f:
            f.write(slimfile.dumps(model))


if __name__ == "__main__":
    main(sys.argv[1])
