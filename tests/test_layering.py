"""pamdi_node must never import orchestrator: the node image must not need it."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_pamdi_node_does_not_import_orchestrator() -> None:
    offenders = []
    for path in (ROOT / "pamdi_node").rglob("*.py"):
        tree = ast.parse(path.read_text(), filename=str(path))
        for node in ast.walk(tree):
            names: list[str] = []
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                names = [node.module]
            offenders += [f"{path.relative_to(ROOT)}: {n}" for n in names if n.split(".")[0] == "orchestrator"]
    assert offenders == []


# ---------------------------------------------------------------------------------- import graph
PACKAGES = ("pamdi_node", "orchestrator", "results", "radio_scenarios")


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _type_checking_only(tree: ast.AST) -> set[int]:
    """Ids of the nodes under ``if TYPE_CHECKING:`` (never imported at run time)."""
    out: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.If):
            t = node.test
            if (isinstance(t, ast.Name) and t.id == "TYPE_CHECKING") or (
                    isinstance(t, ast.Attribute) and t.attr == "TYPE_CHECKING"):
                out |= {id(n) for n in ast.walk(node)}
    return out


def import_graph() -> dict[str, set[str]]:
    """Project module -> the project modules it imports, function-local imports included (a lazy
    import hides a loop from the interpreter at start-up, not from the design)."""
    modules = {_module_name(p): p for pkg in PACKAGES for p in (ROOT / pkg).rglob("*.py")}
    graph: dict[str, set[str]] = {}
    for name, path in modules.items():
        tree = ast.parse(path.read_text(), filename=str(path))
        skip = _type_checking_only(tree)
        package = name if path.name == "__init__.py" else name.rpartition(".")[0]
        edges: set[str] = set()
        for node in ast.walk(tree):
            if id(node) in skip:
                continue
            targets: list[str] = []
            if isinstance(node, ast.Import):
                targets = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    up = package.split(".")[: len(package.split(".")) - (node.level - 1)]
                    base = ".".join(up + ([node.module] if node.module else []))
                targets = [f"{base}.{a.name}" if f"{base}.{a.name}" in modules else base for a in node.names]
            for t in targets:
                while t and t not in modules:  # the nearest project module (a name inside a module)
                    t = t.rpartition(".")[0]
                if t and t != name:
                    edges.add(t)
        graph[name] = edges
    return graph


def import_cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan, iterative)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    cycles: list[list[str]] = []
    for root in graph:
        if root in index:
            continue
        work = [(root, iter(sorted(graph[root])))]
        index[root] = low[root] = len(index)
        stack.append(root)
        on_stack.add(root)
        while work:
            v, it = work[-1]
            w = next(it, None)
            if w is not None:
                if w not in index:
                    index[w] = low[w] = len(index)
                    stack.append(w)
                    on_stack.add(w)
                    work.append((w, iter(sorted(graph.get(w, ())))))
                elif w in on_stack:
                    low[v] = min(low[v], index[w])
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[v])
            if low[v] == index[v]:
                comp = []
                while True:
                    w = stack.pop()
                    on_stack.discard(w)
                    comp.append(w)
                    if w == v:
                        break
                if len(comp) > 1:
                    cycles.append(sorted(comp))
    return cycles


def test_no_import_cycles_among_the_projects_modules() -> None:
    graph = import_graph()
    # The graph is the real one: lazy (function-local) imports count, TYPE_CHECKING ones do not.
    assert len(graph) > 100 and "orchestrator.spec" in graph["orchestrator.runner"]
    assert "orchestrator.allocator" in graph["orchestrator.workload"]  # imported inside policy_params
    assert import_cycles(graph) == []


def test_the_cycle_check_finds_a_loop() -> None:
    # The checker itself: a planted two-module loop and a three-module loop are found, a chain is not.
    assert import_cycles({"a": {"b"}, "b": {"a"}, "c": {"a"}}) == [["a", "b"]]
    assert import_cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == [["a", "b", "c"]]
    assert import_cycles({"a": {"b"}, "b": {"c"}, "c": set()}) == []


# Modules that run inside the node image or on every run (spec, device table, runner, metrics,
# keys, the backend interface, GPU profiles) must not pull a heavy dependency in at import time:
# the image carries none of the orchestrator's extras, and `pamdi --help` must stay fast.
LIGHT_CORE = ("orchestrator.spec", "orchestrator.devices", "orchestrator.runner", "orchestrator.metrics",
              "orchestrator.keys", "orchestrator.backends.base", "orchestrator.gpuprofiles", "pamdi_node.wire",
              "pamdi_node.agent.config", "pamdi_node.policies")
HEAVY = ("torch", "pandas", "pyarrow", "matplotlib", "scipy", "dask", "distributed", "docker", "asyncssh",
         "pyroute2", "scapy", "transformers", "safetensors")


def test_the_light_core_imports_nothing_heavy_at_module_level() -> None:
    import subprocess
    import sys

    code = ("import importlib, json, sys\n"
            f"out = {{}}\nfor m in {list(LIGHT_CORE)!r}:\n"
            "    importlib.import_module(m)\n"
            f"    out[m] = sorted(h for h in {list(HEAVY)!r} if h in sys.modules)\n"
            "print(json.dumps(out))\n")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, timeout=120)
    assert done.returncode == 0, done.stderr
    import json

    loaded = json.loads(done.stdout)
    assert set(loaded) == set(LIGHT_CORE)
    assert {m: h for m, h in loaded.items() if h} == {}


MAX_MODULE_LINES = 400


def test_no_module_over_400_lines() -> None:
    # A module that grows past this is split by responsibility (tests and benches excepted).
    long = {str(p.relative_to(ROOT)): n for pkg in PACKAGES for p in (ROOT / pkg).rglob("*.py")
            if (n := len(p.read_text().splitlines())) > MAX_MODULE_LINES}
    assert long == {}
