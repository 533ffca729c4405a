"""The layer rules of docs/architecture.md, read from the source with ``ast``.

Layers: infrastructure (modules directly under ``mercato``) <- domains (one package each)
<- flows (``mercato.flows``: use cases that call several domains) <- adapters (routers,
commands, manifests: ``api.py``, ``*_api.py``, ``cli.py``, ``deps.py``, ``manifest.py``).
The rules:

1. a domain module that is not an adapter imports neither flows nor any adapter module;
2. a domain imports another domain's ``models`` only where ``MODEL_ALLOWANCES`` says so
   (it asks the owning domain's ``service`` instead);
3. the domains' import graph (adapters left out) has no cycle;
4. a domain's ``event_types`` (its published events) is a contract, not a dependency on
   the domain: subscribing to another domain's events adds no edge to the graph, and an
   ``event_types`` module imports no other domain;
5. events are published as types: only the outbox itself uses its untyped primitive
   ``events.record_event``;
6. no ``mercato`` import hides inside a function (that is how cycles were dodged), except in
   command-line modules, which import the work of each command when it runs so that
   ``mercato --help`` starts fast.

``check(root)`` returns the violations as sentences, so a planted violation in a copy of a
tree can be tested like the real one.
"""

from __future__ import annotations

import ast
import functools
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path

ADAPTER_NAMES = frozenset({"api.py", "cli.py", "deps.py", "manifest.py"})
NOT_DOMAINS = frozenset({"flows", "web", "bench", "migrations", "geocoding"})

# (importing domain, owning domain) -> why reading the owner's tables is the right call.
# Each entry is a read of a row the importer keeps a reference to, done in bulk where a
# service call per row would cost a query each; none of them writes the owner's rows.
MODEL_ALLOWANCES: Mapping[tuple[str, str], str] = {
    ("storefront", "catalog"): "the shopper read model shapes the product and category rows "
    "catalog.service returns; it names their types and runs no query of its own",
    ("fulfillment", "orders"): "routing, tasks, shipping and pickups work on the order and "
    "line rows orders.service returns (reading them, naming their types); order state "
    "changes go through orders.service",
    ("fulfillment", "locations"): "routing and shipping read coordinates, capabilities and "
    "addresses of the location rows locations.service returns",
    ("loyalty", "orders"): "points are planned from the order row orders.service returns; "
    "the import names its type only",
    ("support", "orders"): "a case links and shows the order rows orders.service returns; "
    "support names their types and runs no query on them",
    ("support", "customers"): "the agent's overview shows the profile customers.service "
    "returns; support names its type and runs no query on it",
}


@dataclass(frozen=True)
class Import:
    module: str  # the importing module, dotted
    target: str  # the imported module, dotted
    line: int
    in_function: bool


@dataclass
class Tree:
    root: Path  # the folder holding the ``mercato`` package
    package: str = "mercato"
    modules: dict[str, Path] = field(default_factory=dict)
    domain_names: frozenset[str] = frozenset()

    def __post_init__(self) -> None:
        base = self.root / self.package
        self.domain_names = frozenset(
            d.name
            for d in base.iterdir()
            if d.is_dir() and (d / "manifest.py").exists() and d.name not in NOT_DOMAINS
        )
        for path in sorted(base.rglob("*.py")):
            parts = path.relative_to(self.root).with_suffix("").parts
            if "migrations" in parts:
                continue
            name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
            self.modules[name] = path

    def domains(self) -> list[str]:
        return sorted(self.domain_names)

    def domain_of(self, module: str) -> str | None:
        parts = module.split(".")
        if len(parts) < 2 or parts[1] not in self.domain_names:
            return None
        return parts[1]

    def is_adapter(self, module: str) -> bool:
        path = self.modules[module]
        return path.name in ADAPTER_NAMES or path.name.endswith("_api.py")

    def is_command_line(self, module: str) -> bool:
        return self.modules[module].name == "cli.py" or module.startswith(f"{self.package}.bench")

    def imports(self) -> Iterator[Import]:
        for module, path in self.modules.items():
            text = path.read_text(encoding="utf-8")
            yield from _imports_in(module, path.name == "__init__.py", text, self.package)

    def resolve(self, target: str) -> str:
        """The longest known module a dotted import names (``a.b.c`` may be ``a.b``'s c)."""
        while target and target not in self.modules:
            target = target.rpartition(".")[0]
        return target


# Cached on the source text: the planted-breach tests check copies of the same files.
@functools.lru_cache(maxsize=4096)
def _imports_in(module: str, is_package: bool, text: str, package: str) -> tuple[Import, ...]:
    return tuple(_imports_of(module, is_package, ast.parse(text), package))


def _imports_of(module: str, is_package: bool, tree: ast.Module, package: str) -> Iterator[Import]:
    for node, in_function in _walk(tree, False):
        if isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name.split(".")[0] == package:
                    yield Import(module, alias.name, node.lineno, in_function)
        elif isinstance(node, ast.ImportFrom):
            base = _absolute(module, is_package, node)
            if base.split(".")[0] != package:
                continue
            for alias in node.names:
                yield Import(module, f"{base}.{alias.name}", node.lineno, in_function)


def _absolute(module: str, is_package: bool, node: ast.ImportFrom) -> str:
    if not node.level:
        return node.module or ""
    parts = module.split(".")
    keep = len(parts) - node.level + (1 if is_package else 0)
    base = ".".join(parts[:keep])
    return f"{base}.{node.module}" if node.module else base


def _walk(node: ast.AST, in_function: bool) -> Iterator[tuple[ast.AST, bool]]:
    for child in ast.iter_child_nodes(node):
        inside = in_function or isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef))
        yield child, in_function
        yield from _walk(child, inside)


def check(root: Path, allowances: Mapping[tuple[str, str], str] = MODEL_ALLOWANCES) -> list[str]:
    tree = Tree(root)
    problems: list[str] = []
    edges: dict[str, set[str]] = {d: set() for d in tree.domains()}
    for imp in tree.imports():
        target = tree.resolve(imp.target)
        where = f"{imp.module} (line {imp.line})"
        if imp.in_function and not tree.is_command_line(imp.module):
            problems.append(f"{where} imports {target} inside a function")
        importer, owner = tree.domain_of(imp.module), tree.domain_of(target)
        if importer is None or not target:
            continue
        if not tree.is_adapter(imp.module):
            if target == f"{tree.package}.flows" or target.startswith(f"{tree.package}.flows."):
                problems.append(f"{where}: domain {importer} imports the flows layer ({target})")
            elif owner is not None and tree.is_adapter(target):
                problems.append(f"{where}: domain {importer} imports the adapter {target}")
        if owner is None or owner == importer:
            continue
        if imp.module.endswith(".event_types"):
            problems.append(f"{where}: the events of {importer} import domain {owner}")
            continue
        if target.endswith(".event_types"):
            continue
        if target.endswith(".models") and (importer, owner) not in allowances:
            problems.append(f"{where}: domain {importer} imports {target}, {owner}'s tables")
        if not tree.is_adapter(imp.module):
            edges[importer].add(owner)
    problems.extend(_untyped_events(tree))
    problems.extend(f"import cycle between domains: {' -> '.join(c)}" for c in cycles(edges))
    return list(dict.fromkeys(problems))


def _untyped_events(tree: Tree) -> list[str]:
    outbox = f"{tree.package}.events"
    return [
        f"{module} publishes an untyped event (record_event): publish an event class"
        for module, path in tree.modules.items()
        if module != outbox and "record_event" in path.read_text(encoding="utf-8")
    ]


def cycles(edges: Mapping[str, set[str]]) -> list[list[str]]:
    """One cycle per strongly connected component with more than one domain (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        for nxt in sorted(edges.get(node, ())):
            if nxt not in index:
                visit(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            component: list[str] = []
            while True:
                top = stack.pop()
                component.append(top)
                if top == node:
                    break
            if len(component) > 1:
                found.append([*sorted(component), sorted(component)[0]])

    for node in sorted(edges):
        if node not in index:
            visit(node)
    return found
