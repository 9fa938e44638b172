import sys


def _paths():
    """pybind11-style helpers: python -m slimrt --includedir | --libdir | --cmakedir."""
    from . import get_cmake_dir, get_include, get_library

    for flag, fn in (("--includedir", get_include), ("--cmakedir", get_cmake_dir), ("--library", get_library)):
        if len(sys.argv) == 2 and sys.argv[1] == flag:
            print(fn())
            return True
    return False


if __name__ == "__main__":
    if not _paths():
        from .cli import main

        sys.exit(main())
