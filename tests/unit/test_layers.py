"""The layers hold (docs/architecture.md, "Seams"): the Transport interface loads no renderer and no
cryptography; no two packages of src/pgha import each other (directly or through others); what runs as
source elsewhere (the file value types, the port listener, etcd_leader) imports only the standard library;
rendering is pure; only the CLI picks the lab; HTTP requests (httpx) and database connections to the stack
are opened in pgha.probe only."""

from __future__ import annotations

import ast
import json
import subprocess
import sys
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[2] / "src"
PGHA = SRC / "pgha"


def test_the_transport_interface_imports_neither_cryptography_nor_the_renderers() -> None:
    code = "import json, sys; import pgha.transport.base; print(json.dumps(sorted(sys.modules)))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    loaded = json.loads(out)
    assert "pgha.transport.base" in loaded
    heavy = [m for m in loaded if m.split(".")[0] == "cryptography" or m.startswith(("pgha.render", "pgha.plan",
                                                                                       "pgha.pki"))]
    assert heavy == []


def unit_of(module: str) -> str:
    """A sub-package is one unit (pgha.lab); a top-level module is its own (pgha.plan)."""
    parts = module.split(".")
    return ".".join(parts[:2]) if len(parts) > 1 and (PGHA / parts[1]).is_dir() else module


def resolve(name: str) -> str:
    """The longest prefix of a dotted import that is a module or package of src/pgha."""
    parts = name.split(".")
    while parts and not (SRC.joinpath(*parts).with_suffix(".py").exists() or SRC.joinpath(*parts).is_dir()):
        parts.pop()
    return ".".join(parts)


def import_graph() -> dict[str, dict[str, str]]:
    """unit -> imported unit -> one module that imports it (every import, also those inside functions)."""
    graph: dict[str, dict[str, str]] = {}
    for path in PGHA.rglob("*.py"):
        module = ".".join(path.relative_to(SRC).with_suffix("").parts).removesuffix(".__init__")
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                names = [f"{node.module}.{a.name}" for a in node.names]
            else:
                continue
            for name in names:
                if name.startswith("pgha."):
                    target = unit_of(resolve(name))
                    if target not in ("pgha", unit_of(module)):
                        graph.setdefault(unit_of(module), {}).setdefault(target, module)
    return graph


def cycles(graph: dict[str, dict[str, str]]) -> list[list[str]]:
    """The strongly connected components with more than one unit (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    found: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        for w in graph.get(v, {}):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for v in list(graph):
        if v not in index:
            visit(v)
    return found


def test_no_import_cycle_between_packages() -> None:
    graph = import_graph()
    assert "pgha.lab" in graph["pgha.cli"]  # the graph sees imports inside functions too
    loops = cycles(graph)
    detail = [f"{u} -> {v} (in {graph[u][v]})" for c in loops for u in c for v in graph.get(u, {}) if v in c]
    assert loops == [], detail


def test_the_cycle_check_finds_a_cycle() -> None:
    assert cycles({"a": {"b": "a"}, "b": {"c": "b"}, "c": {"a": "c"}, "d": {"a": "d"}}) == [["a", "b", "c"]]


def module_imports(path: Path) -> set[str]:
    """Every module a file imports (absolute imports, also those inside functions)."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found |= {node.module} | {f"{node.module}.{a.name}" for a in node.names}
    return found - {"__future__"} - {n for n in found if n.startswith("__future__.")}


@pytest.mark.parametrize("module", [
    "files.py",  # shared by the Transport interface, the plan builder and files_helper (its ACL rule as source)
    "deploy/listener.py",  # run by a server's own python3 (the port check)
    "etcd_leader.py",  # Patroni's on_role_change callback, run by Patroni's Python where pgha is not installed
])
def test_what_runs_as_source_elsewhere_imports_only_the_standard_library(module: str) -> None:
    outside = {m for m in module_imports(PGHA / module) if m.split(".")[0] not in sys.stdlib_module_names}
    assert outside == set()


def test_rendering_is_pure() -> None:
    """render/ turns the spec into text: it reaches no node, process or network, and knows no target (it may
    read the spec, layouts, services, secrets and constants)."""
    impure = ("pgha.transport", "pgha.probe", "pgha.lab", "pgha.target", "pgha.plan", "pgha.orchestrate",
              "pgha.ops", "pgha.verify", "pgha.deploy", "pgha.doctor", "pgha.drill", "pgha.cli", "pgha.poll",
              "pgha.etcd_auth")
    forbidden = ("subprocess", "socket", "os", "shutil", "httpx", "psycopg", "asyncssh")
    bad = {}
    for path in (PGHA / "render").glob("*.py"):
        wrong = {m for m in module_imports(path) if m.startswith(impure) or m.split(".")[0] in forbidden}
        if wrong:
            bad[path.name] = sorted(wrong)
    assert bad == {}


def test_only_the_cli_knows_the_lab() -> None:
    """Nothing above the Target asks whether it drives the lab: pgha.lab is chosen by the CLI alone."""
    graph = import_graph()
    assert sorted(u for u, targets in graph.items() if "pgha.lab" in targets) == ["pgha.cli"]


HTTP_OR_SQL = {("httpx", name) for name in ("get", "post", "put", "patch", "delete", "request", "stream", "Client",
                                              "AsyncClient")} | {("psycopg", "connect"), ("psycopg", "Connection")}


def opened_connections(path: Path) -> list[str]:
    """Calls that open an HTTP request or a database connection (``httpx.get(...)``, ``psycopg.connect(...)``)."""
    found = []
    for node in ast.walk(ast.parse(path.read_text())):
        f = node.func if isinstance(node, ast.Call) else None
        while isinstance(f, ast.Attribute) and isinstance(f.value, ast.Attribute):  # psycopg.Connection.connect
            f = f.value
        if isinstance(f, ast.Attribute) and isinstance(f.value, ast.Name) and (f.value.id, f.attr) in HTTP_OR_SQL:
            found.append(f"{path.relative_to(SRC)}:{node.lineno} {f.value.id}.{f.attr}")
    return found


def test_http_and_sql_to_the_stack_are_opened_in_probe_only() -> None:
    """Every request and connection pgha makes to the stack is opened by pgha.probe (and bounded there)."""
    outside = [c for p in PGHA.rglob("*.py") if "probe" not in p.relative_to(PGHA).parts
               for c in opened_connections(p)]
    assert outside == []
    assert any(opened_connections(p) for p in (PGHA / "probe").glob("*.py"))  # the scan does see them
