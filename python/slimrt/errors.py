"""slimrt exceptions.

The classes are defined by the native core (so C++ errors arrive as them) and
re-exported here:

* ``Error`` (a ``RuntimeError``): base of every slimrt error.
* ``FormatError``: a malformed, damaged or hostile file (.slim, .keras, .h5, state dict).
* ``InputError`` (also a ``ValueError``): wrong input names, shapes or dtypes, bad arguments.
* ``UnsupportedError``: an op, layer or format slimrt cannot run.
* ``CompressionError``: a compression recipe that cannot apply.
"""
from ._native import core as _core

Error = _core.Error
FormatError = _core.FormatError
InputError = _core.InputError
UnsupportedError = _core.UnsupportedError


class CompressionError(Error):
    """A compression recipe that cannot apply to this model."""


__all__ = ["Error", "FormatError", "InputError", "UnsupportedError", "CompressionError"]
