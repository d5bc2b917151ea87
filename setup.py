"""Declares the compiled core. Everything else lives in pyproject.toml."""

import os
import sys
import sysconfig

from setuptools import Extension, setup

try:
    from Cython.Build import cythonize
except ImportError as exc:  # pragma: no cover - build-time only
    raise SystemExit(
        "fastserve: Cython is needed to build the compiled core (src/fastserve/_core). "
        "Install with `pip install .`, which fetches the build requirements from pyproject.toml."
    ) from exc


def _check_compiler() -> None:
    # Fail with a clear message before setuptools prints a page of noise: the core has no pure-Python twin.
    import shutil

    from setuptools._distutils.ccompiler import new_compiler
    from setuptools._distutils.sysconfig import customize_compiler

    compiler = new_compiler()
    customize_compiler(compiler)
    executable = getattr(compiler, "compiler_so", None)  # None on MSVC, which checks itself
    if executable and shutil.which(executable[0]) is None:
        raise SystemExit(
            f"fastserve: C compiler {executable[0]!r} not found. The compiled core (src/fastserve/_core) needs one: "
            "install it (Debian/Ubuntu: `apt-get install build-essential python3-dev`) and retry."
        )
    if not os.path.exists(os.path.join(sysconfig.get_paths()["include"], "Python.h")):
        raise SystemExit(
            "fastserve: Python.h not found. Install the Python development headers "
            "(Debian/Ubuntu: `apt-get install python3-dev`) and retry."
        )


def _extensions() -> list:
    import numpy

    debug = os.environ.get("FASTSERVE_DEBUG") == "1"
    macros = [("NPY_NO_DEPRECATED_API", "NPY_1_7_API_VERSION")]
    if debug:
        macros.append(("CYTHON_TRACE_NOGIL", "1"))
    # No fused multiply-add: transforms must round each operation as numpy does.
    compile_args = (["-O0", "-g"] if debug else ["-O3"]) + ["-ffp-contract=off"]
    modules = [f"_core.{name}" for name in ("rows", "batcher", "transforms", "sketch", "scan", "answers",
                                                   "answer_ring")]
    modules.append("http._protocol")  # the compiled connection protocol (`fastserve serve --http compiled`)
    # `fastserve bench`: the histogram anywhere; the load generator and its sink drive epoll, so Linux only.
    modules.append("bench.histogram")
    if sys.platform.startswith("linux"):
        modules += ["bench.sink", "bench.engine"]
    exts = [
        Extension(
            f"fastserve.{name}",
            [f"src/fastserve/{name.replace('.', '/')}.pyx"],
            include_dirs=[numpy.get_include()],
            define_macros=macros,
            extra_compile_args=compile_args if sys.platform != "win32" else [],
        )
        for name in modules
    ]
    return cythonize(
        exts,
        language_level=3,
        annotate=debug,
        compiler_directives={
            "embedsignature": True,
            "boundscheck": debug,
            "wraparound": False,
            "cdivision": True,
            "linetrace": debug,
        },
    )


if any(cmd in sys.argv for cmd in ("build_ext", "bdist_wheel", "install", "develop", "editable_wheel", "build")):
    _check_compiler()

setup(ext_modules=_extensions())
