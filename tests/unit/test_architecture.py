"""The architecture is a contract, checked on every test run."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def test_import_contracts_hold() -> None:
    exe = Path(sys.executable).with_name("lint-imports")
    result = subprocess.run([str(exe)], cwd=ROOT, capture_output=True, text=True, check=False)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "0 broken" in result.stdout


def test_core_imports_no_io_library_at_runtime() -> None:
    core = sorted(
        ".".join(p.relative_to(ROOT / "provisioner" / "core").with_suffix("").parts)
        for p in (ROOT / "provisioner" / "core").rglob("*.py")
        if p.stem != "__init__"
    )
    libs = ("ldap3", "msal", "requests", "sqlalchemy", "apscheduler", "psycopg", "pymysql", "structlog", "click", "rich")
    code = (
        "import importlib, sys\n"
        f"for m in {core!r}: importlib.import_module('provisioner.core.' + m)\n"
        f"print(','.join(m for m in {libs!r} if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip()
    assert len(core) > 20
    assert out == "", f"core pulled in I/O libraries: {out}"


def test_modules_stay_small() -> None:
    big = {
        str(p.relative_to(ROOT)): n
        for p in (ROOT / "provisioner").rglob("*.py")
        if (n := len(p.read_text().splitlines())) > 450
    }
    assert big == {}, f"modules over 450 lines: {big}"


def _import_cycles() -> list[list[str]]:
    """Strongly connected groups of modules in provisioner's import graph (Tarjan), counting
    every import: lazy ones inside functions and ``TYPE_CHECKING`` ones too."""
    import grimp

    graph = grimp.build_graph("provisioner", exclude_type_checking_imports=False)
    modules = sorted(graph.modules)
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    cycles: list[list[str]] = []

    def visit(start: str) -> None:  # iterative: no recursion limit on a deep graph
        work = [(start, iter(sorted(graph.find_modules_directly_imported_by(start))))]
        index[start] = low[start] = len(index)
        stack.append(start)
        on_stack.add(start)
        while work:
            node, edges = work[-1]
            for nxt in edges:
                if nxt not in index:
                    index[nxt] = low[nxt] = len(index)
                    stack.append(nxt)
                    on_stack.add(nxt)
                    work.append((nxt, iter(sorted(graph.find_modules_directly_imported_by(nxt)))))
                    break
                if nxt in on_stack:
                    low[node] = min(low[node], index[nxt])
            else:
                work.pop()
                if work:
                    low[work[-1][0]] = min(low[work[-1][0]], low[node])
                if low[node] == index[node]:
                    group = []
                    while True:
                        m = stack.pop()
                        on_stack.discard(m)
                        group.append(m)
                        if m == node:
                            break
                    if len(group) > 1 or node in graph.find_modules_directly_imported_by(node):
                        cycles.append(sorted(group))

    for m in modules:
        if m not in index:
            visit(m)
    return cycles


def test_no_module_imports_a_module_that_imports_it_back() -> None:
    assert _import_cycles() == []


def test_the_cycle_check_finds_a_cycle(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The check above can fail: two modules importing each other (one under TYPE_CHECKING) are found."""
    import grimp

    pkg = tmp_path / "cyclic"
    pkg.mkdir()
    (pkg / "__init__.py").write_text("")
    (pkg / "a.py").write_text("from cyclic import b\n")
    (pkg / "b.py").write_text("from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from cyclic import a\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    real = grimp.build_graph
    monkeypatch.setattr(grimp, "build_graph", lambda _name, **kw: real("cyclic", cache_dir=None, **kw))
    assert _import_cycles() == [["cyclic.a", "cyclic.b"]]


def _module_state(paths: list[Path]) -> list[str]:
    """Module-level bindings that hold state filled at run time: an empty container, a
    mutable container or memo constructed, or a function cache (``file:name``)."""
    import ast

    makers = {"dict", "list", "set", "WeakKeyDictionary", "WeakValueDictionary", "OrderedDict", "defaultdict",
              "GrantMemo", "DiffMemo", "WarmState", "SourceMemory", "DnNames"}
    found = []
    for path in paths:
        where = path.relative_to(ROOT / "provisioner").as_posix() if path.is_relative_to(ROOT) else path.name
        for node in ast.parse(path.read_text()).body:
            value = node.value if isinstance(node, (ast.Assign, ast.AnnAssign)) else None
            call = value.func if isinstance(value, ast.Call) else None
            name = call.attr if isinstance(call, ast.Attribute) else call.id if isinstance(call, ast.Name) else ""
            empty = (isinstance(value, ast.Dict) and not value.keys) or (isinstance(value, ast.List) and not value.elts)
            cached = isinstance(node, ast.FunctionDef) and any("cache" in ast.unparse(d) for d in node.decorator_list)
            if empty or name in makers or cached:
                target = node.target if isinstance(node, ast.AnnAssign) else node.targets[0] if isinstance(
                    node, ast.Assign) else node
                found.append(f"{where}:{getattr(target, 'id', getattr(target, 'name', '?'))}")
    return found


ALLOWED_MODULE_STATE: dict[str, str] = {}
"""Module-level state kept on purpose, each with why (file:line as the check reports it)."""


def test_no_module_keeps_state_in_module_globals(tmp_path: Path) -> None:
    """Warm-run caches belong to the daemon's WarmState (engine/warm.py; the source readers'
    to its SourceMemory, sources/memory.py): no module of provisioner -- core, engine, sources,
    targets, store, alerts, review, daemon, cli -- keeps state at module level, except the
    explicit, justified allow-list (and the check finds state where it is)."""
    modules = sorted((ROOT / "provisioner").rglob("*.py"))
    found = _module_state(modules)
    assert [f for f in found if f not in ALLOWED_MODULE_STATE] == []
    assert set(ALLOWED_MODULE_STATE) <= set(found), "an allow-list entry no longer exists: drop it"
    bad = tmp_path / "bad.py"
    bad.write_text("import functools\n_LAST: dict[str, int] = {}\nMEMO = GrantMemo()\n"
                   "@functools.lru_cache\ndef f() -> None: ...\nHOOKS: list[int] = []\nSEEN = set()\n")
    assert _module_state([bad]) == ["bad.py:_LAST", "bad.py:MEMO", "bad.py:f", "bad.py:HOOKS", "bad.py:SEEN"]
