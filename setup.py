"""Build of sipsock: the SIP core compiled with mypyc when it can be, pure Python otherwise.

setup.cfg holds the metadata; this file only adds the compiled modules,
listed once in `sipsock.buildinfo.COMPILED_MODULES`.  No C compiler, no
Python headers, a failed compile or ``SIPSOCK_PURE_PYTHON=1`` give a
pure-Python install that works, with one line saying why (never a failed
install).  The daemon logs which one it runs ("SIP core: ...").
"""

from __future__ import annotations

import importlib.util
import os
import shlex
import shutil
import sys
import sysconfig
from pathlib import Path
from typing import Any

from setuptools import Distribution, setup
from setuptools.command.build_ext import build_ext

ROOT = Path(__file__).resolve().parent


def _buildinfo() -> Any:
    """`sipsock.buildinfo`, loaded by path (sipsock is not installed yet)."""
    spec = importlib.util.spec_from_file_location(
        "_sipsock_buildinfo", ROOT / "sipsock" / "buildinfo.py"
    )
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


BUILDINFO = _buildinfo()
PURE_WANTED = os.environ.get(BUILDINFO.PURE_PYTHON_ENV, "") not in ("", "0")


def say_pure(why: str) -> None:
    """The one line telling why this install is pure Python."""
    print(f"sipsock: installing the SIP core as pure Python: {why}", file=sys.stderr, flush=True)


def remove_compiled_in_place() -> None:
    """Delete compiled modules a former in-place build left beside the sources.

    Python prefers an extension module to the ``.py`` beside it, so a pure
    build must not leave them behind.
    """
    for path in BUILDINFO.COMPILED_MODULES:
        source = ROOT / path
        stem = "__init__" if source.name == "__init__.py" else source.stem
        for built in source.parent.glob(f"{stem}.*.so"):
            built.unlink()
    for shared in ROOT.glob("*__mypyc.*.so"):
        shared.unlink()


def missing_toolchain() -> str | None:
    """Why this machine cannot compile C extensions, or None when it can.

    Checked before mypyc runs: its type check takes half a minute, wasted
    when the compile is bound to fail.
    """
    command = os.environ.get("CC") or sysconfig.get_config_var("CC") or "cc"
    words = shlex.split(command)
    program = words[0] if words else "cc"
    if shutil.which(program) is None:
        return f"no C compiler ({program!r} not found)"
    headers = os.path.join(sysconfig.get_paths()["include"], "Python.h")
    if not os.path.exists(headers):
        return f"no Python headers ({headers} is missing)"
    return None


#: Where mypyc writes its C sources and its copy of the runtime library.
MYPYC_BUILD_DIR = "build"
#: mypyc 2.4.1's ``bytes`` slice with both bounds (``data[start:end]``) passes
#: ``end - start`` to ``PyBytes_FromStringAndSize`` unchecked: when ``start``
#: lies beyond ``end`` Python gives ``b""`` and the compiled code raises
#: ``SystemError: Negative size``. A received Via with its first blank after
#: the branch reached it (found by the atheris OPTIONS target).
BYTES_SLICE_BUG = "        Py_ssize_t slice_len = endn - startn;\n"
BYTES_SLICE_FIX = "        Py_ssize_t slice_len = endn > startn ? endn - startn : 0;\n"


def fix_bytes_slice(runtime: Path) -> str | None:
    """Fix mypyc's empty-slice bug in its runtime copy; why not, or None once fixed."""
    try:
        text = runtime.read_text(encoding="utf-8")
    except OSError as error:
        return f"mypyc's runtime copy {runtime} cannot be read ({error})"
    if BYTES_SLICE_FIX in text:
        return None
    if text.count(BYTES_SLICE_BUG) != 1:
        return f"mypyc's {runtime.name} is not the one this build knows how to fix"
    runtime.write_text(text.replace(BYTES_SLICE_BUG, BYTES_SLICE_FIX), encoding="utf-8")
    return None


#: mypy's settings for the compile. The compiled modules are checked; what they
#: import from the rest of sipsock is followed for its types but not checked
#: (``silent``): the package parents of the proxy rules (``sipsock.apps``,
#: ``sipsock.config``) import Twisted and zope.interface classes that only
#: setup.cfg's mypy-zope plugin reads right, and Twisted may not be installed
#: yet when a fresh environment builds the wheel. The application seam
#: (``sipsock.apps.interface``: zope.interface classes) is not read at all: the
#: compiled dispatcher and proxy see its names as ``Any`` whether zope is
#: installed or not, so the compile cannot differ between the two.
MYPYC_CONFIG = """\
[mypy]
follow_imports = silent
[mypy-sipsock.apps.interface]
follow_imports = skip
[mypy-twisted.*,zope.*,OpenSSL.*,service_identity.*,autobahn.*,txpostgres.*,psycopg2.*,pymysql.*]
ignore_missing_imports = True
"""


def write_mypyc_config() -> str:
    """Write `MYPYC_CONFIG` under the build directory; its path."""
    path = Path(MYPYC_BUILD_DIR) / "mypyc.ini"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(MYPYC_CONFIG, encoding="utf-8")
    return str(path)


class SipsockDistribution(Distribution):
    """A distribution with extension modules unless a pure build is asked for.

    The extensions themselves are made by `MypycBuildExt`, only when a build
    runs (mypyc type-checks the package first, which takes seconds).
    """

    def has_ext_modules(self) -> bool:
        return not PURE_WANTED


class MypycBuildExt(build_ext):
    """Compile `COMPILED_MODULES` with mypyc; on any failure, build nothing (pure Python)."""

    def finalize_options(self) -> None:
        if self.distribution.ext_modules is None:
            self.distribution.ext_modules = self._mypyc_extensions()
        super().finalize_options()

    def _mypyc_extensions(self) -> list[Any]:
        if PURE_WANTED:
            return []
        missing = missing_toolchain()
        if missing is not None:
            say_pure(missing)
            return []
        try:
            from mypyc.build import mypycify
        except ImportError as error:
            say_pure(f"mypyc is not installed ({error})")
            return []
        paths = list(BUILDINFO.COMPILED_MODULES)
        try:
            # Own flags, not setup.cfg's [mypy] (its plugin is not in the build's
            # environment), and a cache of its own under build/ (not .mypy_cache).
            # The runtime library is copied into build/ (not #included from
            # mypyc's directory) so that its known bug can be fixed there.
            extensions = list(
                mypycify(
                    [
                        *("--config-file", write_mypyc_config(), "--python-version", "3.11"),
                        *("--cache-dir", os.path.join("build", "mypyc-cache")),
                        *paths,
                    ],
                    opt_level="3",
                    target_dir=MYPYC_BUILD_DIR,
                    include_runtime_files=False,
                )
            )
        except BaseException as error:  # mypyc reports type errors by SystemExit
            say_pure(f"mypyc could not compile {len(paths)} modules ({error!r})")
            return []
        unfixed = fix_bytes_slice(Path(MYPYC_BUILD_DIR) / "bytes_ops.c")
        if unfixed is not None:
            say_pure(unfixed)
            return []
        return extensions

    def run(self) -> None:
        try:
            super().run()
        except Exception as error:  # no compiler, no Python.h, a compile or link error
            reason = str(error).strip().splitlines()[-1] if str(error).strip() else repr(error)
            say_pure(f"the C compile failed: {reason}")
            self._drop_extensions()
            return

    def _drop_extensions(self) -> None:
        """Forget every extension and delete what part of a build left behind."""
        for ext in self.extensions:
            built = Path(self.get_ext_fullpath(ext.name))
            if built.exists():
                built.unlink()
        self.extensions = []
        self.distribution.ext_modules = []
        remove_compiled_in_place()


if PURE_WANTED:
    say_pure(f"{BUILDINFO.PURE_PYTHON_ENV}={os.environ[BUILDINFO.PURE_PYTHON_ENV]}")
    remove_compiled_in_place()

setup(distclass=SipsockDistribution, cmdclass={"build_ext": MypycBuildExt})
