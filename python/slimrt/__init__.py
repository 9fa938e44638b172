"""slimrt: a native-kernel quantized inference engine.

Import a Keras or PyTorch model, compress it, save one ``.slim`` file, and run
it on hand-written CPU kernels that execute the compressed formats directly.
"""
from ._native import core as _core
from .errors import CompressionError, Error, FormatError, InputError, UnsupportedError
from .ir import Model, Node, ValueInfo
from . import formats
from .session import Session


def load(path) -> Model:
    """Reads a ``.slim`` file (validated by the C++ loader) into a ``Model``."""
    from .slimfile import load as _load

    return _load(path)

__version__ = "0.1.0"


def report(model, compressed=None, eval_data=None, **kwargs):
    """Per-layer format, bytes, ratio to fp32 and (given ``eval_data=(x, y)``) accuracy before/after."""
    from .compress import report as _report

    return _report(model, compressed=compressed, eval_data=eval_data, **kwargs)


def cpu_info() -> dict:
    """What the CPU offers, what the OS enables and which kernel ISA slimrt runs."""
    return _core.cpu_info()


def from_keras(path, **kwargs) -> Model:
    """Converts a Keras ``.keras`` (v3 zip) or legacy ``.h5`` model file. Never executes code from the file."""
    from .frontends.keras import from_keras as _f

    return _f(path, **kwargs)


def from_torch(module, example_inputs, **kwargs) -> Model:
    """Converts a PyTorch ``nn.Module`` traced on ``example_inputs``."""
    from .frontends.torch import from_torch as _f

    return _f(module, example_inputs, **kwargs)


def _install_dir():
    import os

    return os.path.dirname(os.path.abspath(_core.__file__))


def get_include() -> str:
    """Directory holding ``slimrt/slimrt.h`` (the C API)."""
    import os

    return os.path.join(_install_dir(), "include")


def get_library() -> str:
    """Path of the C shared library ``libslimrt.so``."""
    import os

    return os.path.join(_install_dir(), "lib", "libslimrt.so")


def get_cmake_dir() -> str:
    """Directory of ``slimrtConfig.cmake``: ``find_package(slimrt)`` with ``-Dslimrt_DIR=...``."""
    import os

    return os.path.join(_install_dir(), "cmake")


__all__ = ["Session", "load", "report", "get_include", "get_library", "get_cmake_dir", "Model", "Node", "ValueInfo", "formats", "cpu_info", "from_keras", "from_torch",
           "Error", "FormatError", "InputError", "UnsupportedError", "CompressionError"]
