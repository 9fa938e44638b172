import os

os.environ.setdefault("KERAS_BACKEND", "torch")

import numpy as np
import pytest

import slimrt


def _run(model, x, **kwargs):
    """Runs a model through the C++ runtime (serialise -> validating loader -> Session); returns its outputs."""
    return slimrt.Session(model, **kwargs).run(x)


@pytest.fixture
def run_slim():
    return _run


@pytest.fixture
def rng():
    return np.random.default_rng(0)


def supported_isas():
    return slimrt.cpu_info()["supported_isas"]
