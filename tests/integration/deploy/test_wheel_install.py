"""The built wheel, installed into a fresh virtualenv outside the checkout, runs.

Issue 15.1: the plugin used to ship as ``data_files``, so a wheel install left
``twistd`` with ``Unknown command: sipsock``. This builds the sdist and, from
it, the wheel (``python -m build``) from a copy of the checkout, installs the
wheel with its dependencies into a new virtualenv, and answers an OPTIONS
from the daemon that venv's ``twistd`` runs, in a directory holding nothing
of the checkout.
"""

from __future__ import annotations

import importlib.machinery
import os
import shutil
import signal
import subprocess
import sys
import tarfile
import zipfile
from pathlib import Path

import pytest

from sipsock.buildinfo import COMPILED_MODULES
from tests.net import free_port
from tests.polling import poll_until
from tests.sip_probe import options_udp, status_of

CHECKOUT = Path(__file__).resolve().parents[3]
#: What the sdist must carry so that a wheel can be built from it alone.
SDIST_MUST_HOLD = (
    "README.rst",
    "setup.cfg",
    "pyproject.toml",
    "twisted/plugins/sipsock_plugin.py",
    "sipsock/db/schema_sqlite.sql",
    "sipsock/db/schema_postgres.sql",
    "sipsock/db/schema_mysql.sql",
    "etc/sipsock.toml",
    "etc/sipsock.service",
)
#: README "Installing on a server": write Twisted's plugin cache after an install.
PLUGIN_CACHE = "from twisted.plugin import IPlugin, getPlugins; list(getPlugins(IPlugin))"
WHEEL_MUST_HOLD = (
    "twisted/plugins/sipsock_plugin.py",
    "sipsock/tap.py",
    "sipsock/db/schema_sqlite.sql",
    "sipsock/db/schema_postgres.sql",
    "sipsock/db/schema_postgres_notify.sql",
    "sipsock/db/schema_mysql.sql",
)


def _clean_env(**extra: str) -> dict[str, str]:
    """The environment without anything pointing into the checkout or its venv, plus ``extra``."""
    env = {
        key: value
        for key, value in os.environ.items()
        if key not in ("PYTHONPATH", "VIRTUAL_ENV", "PYTHONHOME", "SIPSOCK_PURE_PYTHON", "CC")
    }
    venv_bin = str(Path(sys.executable).parent)
    env["PATH"] = os.pathsep.join(
        part for part in env.get("PATH", "").split(os.pathsep) if part != venv_bin
    )
    env["PYTHONUNBUFFERED"] = "1"
    return {**env, **extra}


def _run(args: list[str], cwd: Path, timeout: float, **env: str) -> str:
    done = subprocess.run(
        args,
        cwd=cwd,
        env=_clean_env(**env),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        timeout=timeout,
        check=False,
    )
    output = done.stdout.decode(errors="replace")
    assert done.returncode == 0, f"{' '.join(args)} exited {done.returncode}:\n{output}"
    return output


def _copy_sources(target: Path) -> None:
    """The checkout's sources, without its venv, caches or build output."""
    shutil.copytree(
        CHECKOUT,
        target,
        ignore=shutil.ignore_patterns(
            ".git",
            ".venv",
            "__pycache__",
            "*.egg-info",
            "build",
            "dist",
            "var",
            "node_modules",
            ".mypy_cache",
            ".ruff_cache",
            "dropin.cache",
            "*.so",
        ),
    )


def _compiled_files(wheel_names: set[str]) -> list[str]:
    """The modules of `COMPILED_MODULES` the wheel holds as extension modules."""
    suffix = importlib.machinery.EXTENSION_SUFFIXES[0]
    return [path for path in COMPILED_MODULES if path.removesuffix(".py") + suffix in wheel_names]


def _build(source: Path, out: Path) -> tuple[Path, Path]:
    """``python -m build``: the sdist, then the wheel built from that sdist."""
    _run([sys.executable, "-m", "build", "--outdir", str(out), str(source)], source, 300)
    (sdist,) = out.glob("sipsock-*.tar.gz")
    (wheel,) = out.glob("sipsock-*.whl")
    return sdist, wheel


@pytest.mark.timeout(900)
def test_wheel_installed_outside_the_checkout_runs_the_daemon(tmp_path: Path) -> None:
    source = tmp_path / "src"
    _copy_sources(source)
    sdist, wheel = _build(source, tmp_path / "dist")
    with tarfile.open(sdist) as archive:
        root = archive.getnames()[0].split("/")[0]
        in_sdist = {name.removeprefix(root + "/") for name in archive.getnames()}
    assert not [name for name in SDIST_MUST_HOLD if name not in in_sdist]
    with zipfile.ZipFile(wheel) as wheel_file:
        in_wheel = set(wheel_file.namelist())
    assert not [name for name in WHEEL_MUST_HOLD if name not in in_wheel]
    # The plugin joins Twisted's namespace package: no __init__ of ours there.
    assert "twisted/__init__.py" not in in_wheel
    assert "twisted/plugins/__init__.py" not in in_wheel
    assert not [name for name in in_wheel if ".data/" in name]
    # The SIP core is compiled (mypyc): every listed module, and their shared library.
    assert _compiled_files(in_wheel) == list(COMPILED_MODULES)
    assert [name for name in in_wheel if "__mypyc." in name and "/" not in name]
    shutil.rmtree(source)  # nothing of the checkout is left to fall back on

    venv = tmp_path / "opt-sipsock"
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    _run([sys.executable, "-m", "venv", str(venv)], run_dir, 120)
    _run([str(venv / "bin" / "pip"), "install", "-q", str(wheel)], run_dir, 600)
    log = _serve_options(venv, run_dir)
    assert "SIP core: compiled (mypyc)" in log
    assert "older than their sources" not in log  # pip's write order is no edit


@pytest.mark.timeout(900)
def test_an_sdist_installed_without_a_c_compiler_is_pure_python_and_runs(
    tmp_path: Path,
) -> None:
    source = tmp_path / "src"
    _copy_sources(source)
    out = tmp_path / "dist"
    _run([sys.executable, "-m", "build", "--sdist", "--outdir", str(out), str(source)], source, 300)
    (sdist,) = out.glob("sipsock-*.tar.gz")
    shutil.rmtree(source)

    venv = tmp_path / "opt-sipsock"
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    _run([sys.executable, "-m", "venv", str(venv)], run_dir, 120)
    pip = [str(venv / "bin" / "pip"), "install", "-v", str(sdist)]
    missing_cc = tmp_path / "no-such-cc"
    installed = _run(pip, run_dir, 900, CC=str(missing_cc))
    assert (
        f"sipsock: installing the SIP core as pure Python: no C compiler ('{missing_cc}' not found)"
        in installed
    )
    log = _serve_options(venv, run_dir)
    assert "SIP core: pure Python (" in log


def _serve_options(venv: Path, run_dir: Path) -> str:
    """Run the installed daemon until it answers an OPTIONS 200; its log."""
    # README "Installing on a server": regenerate Twisted's plugin cache.
    _run(
        [
            str(venv / "bin" / "python"),
            "-c",
            PLUGIN_CACHE,
        ],
        run_dir,
        60,
    )
    where = _run(
        [
            str(venv / "bin" / "python"),
            "-c",
            "import sipsock.db, twisted.plugins.sipsock_plugin as p; print(p.__file__)",
        ],
        run_dir,
        60,
    )
    assert where.strip().startswith(str(venv)), where
    assert str(CHECKOUT) not in where

    port = free_port(tcp=False)
    config = run_dir / "sipsock.toml"
    config.write_text(
        f'[core]\nlisten = ["udp:127.0.0.1:{port}"]\nstate_dir = "{run_dir / "var"}"\n'
        f"[sockets_mgm]\nprocesses = 1\n"
        f"[mi]\nhttp_port = {free_port(udp=False)}\n"
    )
    log = run_dir / "twistd.log"
    daemon = subprocess.Popen(
        [
            str(venv / "bin" / "twistd"),
            "-n",
            "--pidfile=",
            "--logfile",
            str(log),
            "sipsock",
            "-c",
            str(config),
        ],
        cwd=run_dir,
        env=_clean_env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    try:

        def answered() -> bool:
            assert daemon.poll() is None, (
                daemon.stdout.read().decode(errors="replace") if daemon.stdout else ""
            ) + (log.read_text() if log.exists() else "")
            reply = options_udp(port, timeout=0.5)
            return reply is not None and status_of(reply) == 200

        poll_until(answered, 60, "OPTIONS answered by the installed daemon")
    finally:
        daemon.send_signal(signal.SIGTERM)
        assert daemon.wait(30) == 0, log.read_text() if log.exists() else ""
    return log.read_text()


@pytest.mark.timeout(600)
def test_a_c_compile_that_fails_gives_a_pure_wheel_not_a_failed_build(tmp_path: Path) -> None:
    """A compiler that is there but fails (broken toolchain): the build goes on, pure."""
    source = tmp_path / "src"
    _copy_sources(source)
    out = tmp_path / "dist"
    failing_cc = shutil.which("false")
    assert failing_cc is not None
    pip_wheel = [sys.executable, "-m", "pip", "wheel", "-v", "--no-deps"]
    built = _run(
        [*pip_wheel, "--wheel-dir", str(out), str(source)],
        source,
        300,
        CC=failing_cc,
    )
    assert "sipsock: installing the SIP core as pure Python: the C compile failed" in built
    (wheel,) = out.glob("sipsock-*.whl")
    with zipfile.ZipFile(wheel) as wheel_file:
        in_wheel = set(wheel_file.namelist())
    assert _compiled_files(in_wheel) == []
    assert "sipsock/sip/parser.py" in in_wheel
