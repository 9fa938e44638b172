"""Loads the compiled core.

Developers may point ``SLIMRT_DEV_CORE`` at a ``_core*.so`` built in their own
CMake build directory; everyone else gets the extension installed with the
package.
"""
import importlib.machinery
import importlib.util
import os
import sys


def _load():
    path = os.environ.get("SLIMRT_DEV_CORE")
    if path:
        loader = importlib.machinery.ExtensionFileLoader("slimrt._core", path)
        spec = importlib.util.spec_from_file_location("slimrt._core", path, loader=loader)
        mod = importlib.util.module_from_spec(spec)
        loader.exec_module(mod)
        sys.modules["slimrt._core"] = mod
        return mod
    from . import _core

    return _core


core = _load()
