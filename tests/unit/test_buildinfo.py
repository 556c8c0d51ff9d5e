"""`sipsock.buildinfo`: which SIP core a process runs, and the check scripts/test relies on."""

from __future__ import annotations

import ast
import importlib
import os
from importlib.machinery import EXTENSION_SUFFIXES
from pathlib import Path

from sipsock.buildinfo import (
    COMPILED,
    COMPILED_MODULES,
    compiled_names,
    describe_build,
    expectation_unmet,
    is_extension,
    module_name,
    sip_core,
    source_of,
    stale_extensions,
)

ROOT = Path(__file__).resolve().parents[2]
SO = EXTENSION_SUFFIXES[0]


def test_every_listed_module_exists_and_imports() -> None:
    for path in COMPILED_MODULES:
        assert (ROOT / path).is_file(), path
    assert module_name("sipsock/sip/__init__.py") == "sipsock.sip"
    assert module_name("sipsock/sip/parser.py") == "sipsock.sip.parser"
    for name in compiled_names():
        importlib.import_module(name)


def test_every_module_of_the_sip_core_is_compiled() -> None:
    core = {p.relative_to(ROOT).as_posix() for p in (ROOT / "sipsock" / "sip").glob("*.py")}
    assert core <= set(COMPILED_MODULES)


def test_every_module_of_the_proxy_rules_is_compiled() -> None:
    rules = ROOT / "sipsock" / "apps" / "proxyrules"
    assert {p.relative_to(ROOT).as_posix() for p in rules.glob("*.py")} <= set(COMPILED_MODULES)


def test_all_extension_modules_are_compiled() -> None:
    files = {"a": f"/x/a{SO}", "b": f"/x/b{SO}"}
    assert describe_build(files) == COMPILED == "compiled (mypyc)"


def test_no_extension_module_is_pure_python_with_the_reason() -> None:
    build = describe_build({"a": "/x/a.py", "b": "/x/b.py"})
    assert build.startswith("pure Python (")
    assert "installed without mypyc" in build


def test_some_extension_modules_are_pure_python_naming_the_rest() -> None:
    build = describe_build({"a": f"/x/a{SO}", "b": "/x/b.py", "c": None})
    assert build == "pure Python (only partly compiled: b, c not compiled)"


def test_is_extension_knows_the_suffixes() -> None:
    assert is_extension(f"/x/parser{SO}")
    assert not is_extension("/x/parser.py")
    assert not is_extension(None)


def test_the_expected_build_is_checked_both_ways() -> None:
    pure = describe_build({"a": "/x/a.py"})
    assert expectation_unmet("", pure) is None
    assert expectation_unmet("", COMPILED) is None
    assert expectation_unmet("compiled", COMPILED) is None
    assert expectation_unmet("pure", pure) is None
    assert expectation_unmet("compiled", pure) == (
        f"SIPSOCK_EXPECT_BUILD=compiled but the SIP core runs {pure}"
    )
    assert expectation_unmet("pure", COMPILED) == (
        "SIPSOCK_EXPECT_BUILD=pure but the SIP core runs compiled (mypyc)"
    )
    assert expectation_unmet("fast", COMPILED) is not None


def test_this_process_reads_the_parser_it_imported() -> None:
    parser = importlib.import_module("sipsock.sip.parser")
    assert (sip_core() == COMPILED) == is_extension(parser.__file__)


def test_an_extension_older_than_its_source_is_stale(tmp_path: Path) -> None:
    source = tmp_path / "parser.py"
    built = tmp_path / f"parser{SO}"
    source.write_text("# the source\n")
    built.write_bytes(b"")
    assert source_of(str(built)) == str(source)
    os.utime(source, (1000, 1000))
    os.utime(built, (2000, 2000))
    files = {"p": str(built), "q": str(tmp_path / "q.py"), "r": None}
    assert stale_extensions(files) == []
    os.utime(source, (3000, 3000))  # edited after the build
    assert stale_extensions(files) == ["p"]
    source.unlink()  # a wheel install may ship no source: nothing to compare
    assert stale_extensions(files) == []


def test_an_installed_extension_is_never_stale(tmp_path: Path) -> None:
    """pip writes a module's ``.py`` and its extension in any order: no false warning."""
    installed = tmp_path / "lib" / "python3.11" / "site-packages" / "sipsock" / "sip"
    installed.mkdir(parents=True)
    built = installed / f"parser{SO}"
    built.write_bytes(b"")
    (installed / "parser.py").write_text("# written by pip after the extension\n")
    os.utime(built, (2000, 2000))
    os.utime(installed / "parser.py", (2001, 2001))
    assert stale_extensions({"p": str(built)}) == []


class _RuntimeNames(ast.NodeVisitor):
    """The names a function's code reads when it runs: its annotations left out."""

    def __init__(self) -> None:
        self.names: set[str] = set()

    def visit_Name(self, node: ast.Name) -> None:
        self.names.add(node.id)

    def visit_arg(self, node: ast.arg) -> None:
        pass  # (only its annotation holds names)

    def visit_AnnAssign(self, node: ast.AnnAssign) -> None:
        self.visit(node.target)
        if node.value is not None:
            self.visit(node.value)

    def visit_FunctionDef(self, node: ast.FunctionDef | ast.AsyncFunctionDef) -> None:
        for default in [*node.args.defaults, *node.args.kw_defaults]:
            if default is not None:
                self.visit(default)
        for decorator in node.decorator_list:
            self.visit(decorator)
        for statement in node.body:
            self.visit(statement)

    visit_AsyncFunctionDef = visit_FunctionDef


def _module_names_read_by_functions(tree: ast.Module) -> dict[str, ast.stmt]:
    """Module-level assignments of ``tree`` whose names a function reads, not declared Final."""
    assigned: dict[str, ast.stmt] = {}
    for node in tree.body:
        if isinstance(node, ast.Assign):
            for target in node.targets:
                if isinstance(target, ast.Name):
                    assigned[target.id] = node
        elif (
            isinstance(node, ast.AnnAssign)
            and isinstance(node.target, ast.Name)
            and not ast.unparse(node.annotation).startswith("Final")
        ):
            assigned[node.target.id] = node
    reader = _RuntimeNames()
    for function in ast.walk(tree):
        if isinstance(function, ast.FunctionDef | ast.AsyncFunctionDef):
            reader.visit(function)
        elif isinstance(function, ast.Lambda):
            reader.visit(function.body)
    return {name: assigned[name] for name in reader.names if name in assigned}


def test_the_module_constants_compiled_code_reads_are_final() -> None:
    # Compiled, a module-level name that is not Final is a dict lookup each
    # time a function reads it (a memo read per header line, a pattern per
    # Via); a Final one is a C static.
    found = []
    for path in COMPILED_MODULES:
        tree = ast.parse((ROOT / path).read_text())
        for name, node in _module_names_read_by_functions(tree).items():
            found.append(f"{path}:{node.lineno} {name}")
    assert found == []


def _except_names_of_two_types(function: ast.FunctionDef | ast.AsyncFunctionDef) -> list[str]:
    """Names ``function`` binds in ``except ... as name`` clauses to more than one type."""
    types: dict[str, set[str]] = {}
    for node in ast.walk(function):
        if isinstance(node, ast.ExceptHandler) and node.name and node.type is not None:
            types.setdefault(node.name, set()).add(ast.unparse(node.type))
    return sorted(name for name, caught in types.items() if len(caught) > 1)


def test_compiled_functions_name_each_caught_type_apart() -> None:
    # mypy takes ``except A as error`` and a later ``except B as error`` in
    # one function as two variables; mypyc 2.4 keeps one, of type A, and
    # raises TypeError ("A object expected; got B") when B is caught.
    found = []
    for path in COMPILED_MODULES:
        for node in ast.walk(ast.parse((ROOT / path).read_text())):
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                for name in _except_names_of_two_types(node):
                    found.append(f"{path}:{node.lineno} {node.name}: {name}")
    assert found == []
