"""README.rst: the Quick start works as written, and the operator sections hold true.

Issue 15.12: the Quick start called ``opensips-mi``, which ``scripts/run``
does not install, and ``sipp -sn uac``, which ends with ``Failed call 1``
(exit 1) against the responder's 501. Every command of that block now runs
here against a real daemon, with free ports for the README's fixed ones.
Issue 15.13 and the deployment: "Coming from OpenSIPS" maps every
``sockets_mgm`` parameter to a key sipsock accepts, and "Installing on a
server" describes the layout ``etc/sipsock.service`` expects.
"""

from __future__ import annotations

import configparser
import io
import os
import re
import shlex
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

from sipsock.config import ConfigError, parse_config
from tests.daemon import Daemon
from tests.integration.deploy.test_wheel_install import PLUGIN_CACHE
from tests.net import free_port
from tests.tables import SocketTable

CHECKOUT = Path(__file__).resolve().parents[3]
README = (CHECKOUT / "README.rst").read_text()
#: The parameters of OpenSIPS's sockets_mgm module (its admin guide, 1.5).
SOCKETS_MGM_PARAMETERS = (
    "db_url",
    "table_name",
    "socket_column",
    "advertised_column",
    "tag_column",
    "flags_column",
    "tos_column",
    "processes",
    "max_sockets",
)
#: Programs a Quick start command may run besides sipsock's console scripts:
#: SIPp comes from Debian (scripts/test installs it).
SYSTEM_PROGRAMS = {"sipp"}


def section(title: str) -> str:
    """The text of the top-level section ``title`` (up to the next one)."""
    heading = f"\n{title}\n{'=' * len(title)}\n"
    assert heading in README, f"README has no section {title!r}"
    body = README.split(heading, 1)[1]
    following = re.search(r"\n[^\n]+\n=+\n", body)
    return body[: following.start()] if following else body


def literal_blocks(text: str) -> list[list[str]]:
    """The indented blocks after ``::`` lines, as lists of their lines."""
    blocks: list[list[str]] = []
    lines = text.splitlines()
    for index, line in enumerate(lines):
        if not line.rstrip().endswith("::"):
            continue
        block: list[str] = []
        for following in lines[index + 1 :]:
            if following.strip() and not following.startswith(" "):
                break
            block.append(following)
        blocks.append([line.strip() for line in block if line.strip()])
    return blocks


def console_scripts() -> set[str]:
    parser = configparser.ConfigParser()
    parser.read(CHECKOUT / "setup.cfg")
    entries = parser["options.entry_points"]["console_scripts"]
    return {line.split("=")[0].strip() for line in entries.splitlines() if "=" in line}


def test_quick_start_has_two_setup_commands() -> None:
    text = section("Quick start")
    blocks = literal_blocks(text)
    assert blocks[:2] == [["scripts/run"], ["scripts/test"]]


def test_quick_start_commands_run_as_written(tmp_path: Path) -> None:
    commands = literal_blocks(section("Quick start"))[2]
    assert commands[0] == ". .venv/bin/activate"
    commands = [line.split("  #", 1)[0].strip() for line in commands[1:]]
    installed = console_scripts() | SYSTEM_PROGRAMS
    for command in commands:
        program = shlex.split(command)[0]
        assert program in installed, f"{command!r}: scripts/run installs no {program}"

    # The daemon of scripts/run, on free ports: the example socket and the MI.
    example, added = free_port(), free_port()
    daemon = Daemon(tmp_path)
    (tmp_path / "etc").mkdir()
    (tmp_path / "tests").mkdir()
    (tmp_path / "tests" / "scenarios").symlink_to(CHECKOUT / "tests" / "scenarios")
    table = SocketTable(daemon.db_url)
    daemon.state_dir.mkdir()
    table.init()
    table.insert(f"udp:127.0.0.1:{example}", tag="example")
    daemon.start()
    (tmp_path / "etc" / "sipsock.toml").write_text(daemon.config.read_text())
    env = {
        **os.environ,
        "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}",
    }
    try:
        for written in commands:
            command = (
                written.replace("5070", str(example))
                .replace("5071", str(added))
                .replace("8888", str(daemon.http_port))
            )
            done = subprocess.run(
                command,
                shell=True,
                cwd=tmp_path,
                env=env,
                capture_output=True,
                text=True,
                timeout=60,
                check=False,
            )
            assert done.returncode == 0, f"{command}:\n{done.stdout}\n{done.stderr}"
        listed = daemon.mi("sockets_list")
        assert f"tcp:127.0.0.1:{added}" in str(listed)
    finally:
        assert daemon.stop() == 0


def test_management_interface_says_where_opensips_mi_comes_from() -> None:
    text = section("Management interface")
    assert "pip install opensips" in text


def test_coming_from_opensips_maps_every_parameter() -> None:
    text = section("Coming from OpenSIPS")
    for name in SOCKETS_MGM_PARAMETERS:
        assert f'``modparam("sockets_mgm", "{name}", ' in text, name
        assert f"``[sockets_mgm] {name}``" in text, name
    # sipsock takes each under the same name (and stops at an unknown key).
    values: dict[str, object] = {"db_url": "sqlite:///x.sqlite", "processes": 8}
    values |= {"max_sockets": 100, "table_name": "sockets"}
    for name in SOCKETS_MGM_PARAMETERS:
        value = values.get(name, name.removesuffix("_column"))
        parse_config({"sockets_mgm": {name: value}})
    with pytest.raises(ConfigError):
        parse_config({"sockets_mgm": {"no_such_parameter": 1}})
    # Every TOML in the section is accepted by sipsock's configuration.
    snippets = re.findall(r"``\[core\] (listen = .+?)``", text, re.S)
    assert len(snippets) >= 3
    for snippet in snippets:
        parse_config({"core": tomllib.loads(" ".join(snippet.split()))})
    example = "\n".join(literal_blocks(text)[0])
    parse_config(tomllib.loads(example))
    for needed in ("socket=", "sockets_list", "sockets_reload", '``"error"', "reverse"):
        assert needed in text, needed


def test_installing_on_a_server_matches_the_unit() -> None:
    text = section("Installing on a server")
    unit = (CHECKOUT / "etc" / "sipsock.service").read_text()
    start = re.search(r"^ExecStart=(\S+) .* -c (\S+)$", unit, re.M)
    assert start is not None
    twistd, config = start.groups()
    assert twistd == "/opt/sipsock/bin/twistd" and twistd.rsplit("/bin/", 1)[0] in text
    assert config in text
    assert "/var/lib/sipsock" in text and "StateDirectory=sipsock" in unit
    commands = "\n".join(line for block in literal_blocks(text) for line in block)
    assert "python3 -m venv /opt/sipsock" in commands
    assert PLUGIN_CACHE in commands
    assert "install -D -m 0644 etc/sipsock.service /etc/systemd/system/sipsock.service" in commands
    assert "systemctl enable --now sipsock" in commands


def test_readme_renders_without_warnings() -> None:
    """A broken table or literal would garble the page on an index (long_description)."""
    import docutils.core

    warnings = io.StringIO()
    docutils.core.publish_doctree(
        README,
        settings_overrides={"warning_stream": warnings, "report_level": 2, "halt_level": 5},
    )
    assert warnings.getvalue() == ""
