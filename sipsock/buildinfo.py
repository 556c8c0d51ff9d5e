"""Which modules the build compiles with mypyc, and whether this process runs them compiled.

`COMPILED_MODULES` is the one list of modules ``setup.py`` hands to mypyc
(paths from the project root): the SIP core (``sipsock/sip``), the
dispatcher (``sipsock/apps/dispatch``: from the bytes of a message to the
application), the stateless proxy (``sipsock/apps/proxy`` and its rules,
``sipsock/apps/proxyrules``) and what a UDP socket does per datagram
(``sipsock/transport/datagrams``): the code every message goes through.
"SIP core" in the logs and the MI names them all.
The build compiles them when it can and installs them as pure Python when
it cannot (no C compiler, no Python headers, a failed compile, or
``SIPSOCK_PURE_PYTHON=1``); either install works. `sip_core` says which
one this process imported, for the daemon's start-up log and the MI
``version`` command.

This module imports nothing but the standard library: ``setup.py`` loads it
by path, before sipsock is installed.
"""

from __future__ import annotations

import importlib
import os
from collections.abc import Mapping
from importlib.machinery import EXTENSION_SUFFIXES
from typing import Final

#: The modules mypyc compiles, as paths from the project root.
COMPILED_MODULES: Final = (
    "sipsock/apps/dispatch.py",
    "sipsock/apps/proxy.py",
    "sipsock/apps/proxyrules/__init__.py",
    "sipsock/apps/proxyrules/forwarding.py",
    "sipsock/apps/proxyrules/references.py",
    "sipsock/apps/proxyrules/responsehop.py",
    "sipsock/apps/proxyrules/splice.py",
    "sipsock/apps/proxyrules/viatemplate.py",
    "sipsock/apps/proxyrules/wire.py",
    "sipsock/sip/__init__.py",
    "sipsock/sip/checks.py",
    "sipsock/sip/errors.py",
    "sipsock/sip/extensions.py",
    "sipsock/sip/framer.py",
    "sipsock/sip/grammar.py",
    "sipsock/sip/memo.py",
    "sipsock/sip/message.py",
    "sipsock/sip/options_answer.py",
    "sipsock/sip/options_layout.py",
    "sipsock/sip/options_memo.py",
    "sipsock/sip/parser.py",
    "sipsock/sip/response.py",
    "sipsock/sip/routing.py",
    "sipsock/sip/uri.py",
    "sipsock/sip/via.py",
    "sipsock/transport/datagrams.py",
)

#: The environment variable that makes the build install pure Python.
PURE_PYTHON_ENV: Final = "SIPSOCK_PURE_PYTHON"
#: The environment variable naming the build a test run must find (``compiled``
#: or ``pure``), set by scripts/test so that a silent fallback fails the run.
EXPECT_BUILD_ENV: Final = "SIPSOCK_EXPECT_BUILD"

COMPILED: Final = "compiled (mypyc)"


def module_name(path: str) -> str:
    """The module name of ``path``, one of `COMPILED_MODULES`."""
    name = path.removesuffix(".py").replace("/", ".")
    return name.removesuffix(".__init__")


def compiled_names() -> tuple[str, ...]:
    """The module names of `COMPILED_MODULES`."""
    return tuple(module_name(path) for path in COMPILED_MODULES)


def is_extension(file: str | None) -> bool:
    """Whether ``file`` (a module's ``__file__``) is an extension module."""
    return file is not None and file.endswith(tuple(EXTENSION_SUFFIXES))


def describe_build(files: Mapping[str, str | None]) -> str:
    """``"compiled (mypyc)"`` or ``"pure Python (why)"``, from each module's ``__file__``.

    ``files`` maps the name of each module of `COMPILED_MODULES` to the file
    it was imported from.  Compiled only when every one is an extension module.
    """
    pure = sorted(name for name, file in files.items() if not is_extension(file))
    if not pure:
        return COMPILED
    if len(pure) == len(files):
        return "pure Python (no compiled modules for this interpreter: installed without mypyc)"
    return f"pure Python (only partly compiled: {', '.join(pure)} not compiled)"


def _imported_files() -> dict[str, str | None]:
    return {name: importlib.import_module(name).__file__ for name in compiled_names()}


def sip_core() -> str:
    """How this process runs the SIP core: ``"compiled (mypyc)"`` or ``"pure Python (why)"``."""
    return describe_build(_imported_files())


def source_of(file: str) -> str:
    """The ``.py`` beside the extension module ``file`` (``parser.cpython-311-....so``)."""
    directory, name = os.path.split(file)
    return os.path.join(directory, name.split(".")[0] + ".py")


def stale_extensions(files: Mapping[str, str | None]) -> list[str]:
    """The modules imported from an extension older than the ``.py`` beside it.

    An in-place (editable) build leaves the compiled module beside its
    source, and Python prefers it: an edit of the source does nothing until
    the next build.  An installed package (under ``site-packages``) is never
    stale: pip writes both files of each module, in any order.  Names, sorted.
    """
    stale = []
    for name, file in files.items():
        if file is None or not is_extension(file) or _installed(file):
            continue
        source = source_of(file)
        if os.path.exists(source) and os.path.getmtime(source) > os.path.getmtime(file):
            stale.append(name)
    return sorted(stale)


def _installed(file: str) -> bool:
    parts = file.split(os.sep)
    return "site-packages" in parts or "dist-packages" in parts


def stale_sip_core() -> list[str]:
    """`stale_extensions` of the SIP core this process imported."""
    return stale_extensions(_imported_files())


def expectation_unmet(expected: str, build: str) -> str | None:
    """Why ``build`` (a `sip_core` answer) is not the ``expected`` one, or ``None``.

    ``expected`` is ``compiled``, ``pure`` or empty (anything goes).
    """
    if expected == "":
        return None
    if expected not in ("compiled", "pure"):
        return f"{EXPECT_BUILD_ENV}={expected!r}: expected 'compiled' or 'pure'"
    if (build == COMPILED) == (expected == "compiled"):
        return None
    return f"{EXPECT_BUILD_ENV}={expected} but the SIP core runs {build}"
