"""Every sipsock module imports on its own, and no two modules import each other.

Two checks of the package's shape (issue 17, section 4):

* each module of ``sipsock/`` is imported first, alone, in a fresh
  interpreter: one child process imports them one after the other and
  forgets every ``sipsock`` module between two (the libraries they load,
  Twisted and the others, stay loaded, which changes nothing about the
  order of sipsock's own imports and keeps the test fast);
* a static scan of the import statements of ``sipsock/`` (module level and
  inside functions, the lazy imports; not those under ``if TYPE_CHECKING:``,
  which never run) finds no circle between modules. A circle left for
  later is listed in `ALLOWED_CYCLES` with the issue that removes it; any
  other circle fails the test, named module by module, and so does an
  allowed one that no longer exists (remove it from the list).
"""

from __future__ import annotations

import ast
import json
import subprocess
import sys
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[2] / "sipsock"

#: Circles between modules left for later, each with the issue that removes it.
ALLOWED_CYCLES: dict[frozenset[str], str] = {}


def module_names() -> dict[str, Path]:
    """Every module of the package by dotted name (a package by its own name)."""
    modules: dict[str, Path] = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        modules[".".join(parts)] = path
    return modules


def type_checking_nodes(tree: ast.AST) -> set[int]:
    """The ids of the nodes under an ``if TYPE_CHECKING:`` (imports for the type checker)."""
    skipped: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            for statement in node.body:
                skipped.update(id(inner) for inner in ast.walk(statement))
    return skipped


def imported_modules(name: str, path: Path, modules: dict[str, Path]) -> set[str]:
    """The sipsock modules that module ``name`` imports, at any level of its code.

    ``from package import name`` is an import of the submodule ``name`` when
    there is one, else of the package.
    """
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    skipped = type_checking_nodes(tree)
    found: set[str] = set()
    for node in ast.walk(tree):
        if id(node) in skipped:
            continue
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parts = package.split(".")
                parts = parts[: len(parts) - node.level + 1]
                base = ".".join([*parts, base] if base else parts)
            for alias in node.names:
                submodule = f"{base}.{alias.name}"
                found.add(submodule if submodule in modules else base)
    return {module for module in found if module in modules and module != name}


def import_graph() -> dict[str, set[str]]:
    modules = module_names()
    return {name: imported_modules(name, path, modules) for name, path in modules.items()}


def strongly_connected(graph: dict[str, set[str]]) -> list[frozenset[str]]:
    """The groups of two or more modules that reach one another (Tarjan's algorithm)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    groups: list[frozenset[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for target in sorted(graph[node]):
            if target not in index:
                visit(target)
                low[node] = min(low[node], low[target])
            elif target in on_stack:
                low[node] = min(low[node], index[target])
        if low[node] == index[node]:
            group = set()
            while True:
                member = stack.pop()
                on_stack.discard(member)
                group.add(member)
                if member == node:
                    break
            if len(group) > 1:
                groups.append(frozenset(group))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return groups


def one_cycle(graph: dict[str, set[str]], group: frozenset[str]) -> list[str]:
    """One circle through the modules of ``group``, as a path back to its start."""
    start = min(group)
    paths = {start: [start]}
    queue = [start]
    while queue:
        node = queue.pop(0)
        for target in sorted(graph[node] & group):
            if target == start:
                return [*paths[node], start]
            if target not in paths:
                paths[target] = [*paths[node], target]
                queue.append(target)
    raise AssertionError(f"no circle through {sorted(group)}")


def test_the_scan_sees_lazy_imports_and_skips_type_checking_ones(tmp_path: Path) -> None:
    source = tmp_path / "sample.py"
    source.write_text(
        "from typing import TYPE_CHECKING\n"
        "import sipsock.sockdef\n"
        "if TYPE_CHECKING:\n"
        "    from sipsock.config import Settings\n"
        "def later():\n"
        "    from sipsock.transport import udp\n"
        "    from . import slots\n",
        encoding="utf-8",
    )
    modules = module_names()
    assert imported_modules("sipsock.sample", source, modules) == {
        "sipsock.sockdef",
        "sipsock.transport.udp",
        "sipsock.slots",
    }


def test_cycles_are_found_and_named() -> None:
    graph = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}
    [group] = strongly_connected(graph)
    assert group == {"a", "b", "c"}
    assert one_cycle(graph, group) == ["a", "b", "c", "a"]


def test_no_import_circle_between_sipsock_modules() -> None:
    graph = import_graph()
    found = strongly_connected(graph)
    new = [" -> ".join(one_cycle(graph, group)) for group in found if group not in ALLOWED_CYCLES]
    assert not new, "import circles between sipsock modules:\n" + "\n".join(new)
    gone = [sorted(group) for group in ALLOWED_CYCLES if group not in found]
    assert not gone, f"allowed circles that no longer exist (remove them from the list): {gone}"


def test_the_transports_know_neither_the_core_nor_its_options_shortcut() -> None:
    """Section 3 of issue 17: the OPTIONS fast path sits behind the core, not in a transport."""
    graph = import_graph()
    core = ("sipsock.apps", "sipsock.sip.options_")
    wrong = {
        f"{module} imports {target}"
        for module, targets in graph.items()
        if module.startswith("sipsock.transport")
        for target in targets
        if target.startswith(core)
    }
    assert not wrong, sorted(wrong)


def test_the_seams_import_nothing_of_sipsock_at_run_time() -> None:
    assert import_graph()["sipsock.seams"] == set()


CHILD = """
import importlib, json, sys, traceback
failures = {}
for name in sys.argv[1:]:
    try:
        importlib.import_module(name)
    except BaseException:
        failures[name] = traceback.format_exc(limit=-3)
    for loaded in [module for module in sys.modules if module.split(".")[0] == "sipsock"]:
        # A module compiled by mypyc stays: its shared library keeps it initialized,
        # and imports it again from sys.modules (the pure pass checks it alone).
        if not (getattr(sys.modules[loaded], "__file__", None) or "").endswith(".so"):
            del sys.modules[loaded]
print(json.dumps(failures))
"""


def test_every_sipsock_module_imports_alone() -> None:
    names = sorted(module_names())
    done = subprocess.run(
        [sys.executable, "-c", CHILD, *names],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
        cwd=PACKAGE.parent,
    )
    assert done.returncode == 0, done.stderr
    failures: dict[str, str] = json.loads(done.stdout.strip().splitlines()[-1])
    assert not failures, "modules that do not import alone:\n" + "\n".join(
        f"{name}:\n{trace}" for name, trace in failures.items()
    )
