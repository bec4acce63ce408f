"""The import rules of the project's packages, checked from the source (no module is imported):

    python -m pipeline.layering        # exit 0 and "ok", or each broken rule and exit 1

- `pipeline` (the engine) imports none of `stages`, `jobs`, `sigma`;
- `sigma` (the model) imports none of `pipeline`, `stages`, `jobs`, so it runs where Ray is not;
- `stages` import no `jobs`, and only `stages/rewrite` (inference), the decontamination stage and
  the eval suite's builder (the suite's definitions) import `sigma`;
- `configs` (the shipped configuration files and their YAML reader) imports none of the others,
  so every package may read configuration through it;
- no import circle between modules, counting imports inside functions too (a lazy import that
  closes a circle only hides it). Imports under `if TYPE_CHECKING:` are for type checkers and
  do not count.

An import anywhere in a module counts, at module level or inside a function.
"""

from __future__ import annotations

import ast
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

PACKAGES = ("pipeline", "stages", "sigma", "jobs", "configs")
FORBIDDEN = {  # importer package -> packages it must not import
    "configs": ("pipeline", "stages", "sigma", "jobs"),
    "pipeline": ("stages", "jobs", "sigma"),
    "sigma": ("pipeline", "stages", "jobs"),
    "stages": ("jobs",),
}
# stages that import the model package: what calls a model (inference), and what reads the eval
# suite's definitions to keep it out of a corpus or to build it from the curation's sources
ALLOWED_TO_SIGMA = ("stages.rewrite", "stages.safety.decontaminate", "stages.ingest.eval_suite")


@dataclass(frozen=True)
class Import:
    importer: str
    imported: str
    line: int


def module_name(root: Path, path: Path) -> str:
    parts = list(path.relative_to(root).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _type_checking(node: ast.If) -> bool:
    test = node.test
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING")


def _walk(node: ast.AST) -> Iterator[ast.AST]:
    """Every node below `node`, except what sits under `if TYPE_CHECKING:`."""
    for child in ast.iter_child_nodes(node):
        if isinstance(child, ast.If) and _type_checking(child):
            for other in child.orelse:
                yield other
                yield from _walk(other)
            continue
        yield child
        yield from _walk(child)


def imports_of(root: Path, path: Path, modules: set[str]) -> list[Import]:
    """The project modules `path` imports (a `from package import name` names the submodule where
    `name` is one)."""
    name = module_name(root, path)
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    out = []
    for node in _walk(ast.parse(path.read_text(), str(path))):
        targets: list[str] = []
        if isinstance(node, ast.Import):
            targets = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - (node.level - 1)]
                base = ".".join(anchor + ([base] if base else []))
            targets = [f"{base}.{a.name}" if f"{base}.{a.name}" in modules else base for a in node.names]
        for target in targets:
            if target.split(".")[0] in PACKAGES:
                out.append(Import(name, target, node.lineno))
    return out


def project_imports(root: Path) -> tuple[set[str], list[Import]]:
    paths = [p for pkg in PACKAGES for p in sorted((root / pkg).rglob("*.py"))]
    modules = {module_name(root, p) for p in paths}
    edges = [e for p in paths for e in imports_of(root, p, modules)]
    return modules, edges


def rule_breaks(edges: list[Import]) -> list[str]:
    out = []
    for e in edges:
        src, dst = e.importer.split(".")[0], e.imported.split(".")[0]
        forbidden = dst in FORBIDDEN.get(src, ())
        if src == "stages" and dst == "sigma" and not e.importer.startswith(ALLOWED_TO_SIGMA):
            forbidden = True
        if forbidden:
            out.append(f"{e.importer} (line {e.line}) imports {e.imported}: {src} must not import {dst}")
    return out


def circles(modules: set[str], edges: list[Import]) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan), each sorted."""
    graph: dict[str, set[str]] = {m: set() for m in modules}
    for e in edges:
        if e.imported in graph and e.imported != e.importer:
            graph[e.importer].add(e.imported)
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []
    counter = 0
    for start in sorted(graph):
        if start in index:
            continue
        work = [(start, iter(sorted(graph[start])))]
        index[start] = low[start] = counter
        counter += 1
        stack.append(start)
        on_stack.add(start)
        while work:
            node, children = work[-1]
            child = next(children, None)
            if child is None:
                work.pop()
                if work:
                    low[work[-1][0]] = min(low[work[-1][0]], low[node])
                if low[node] == index[node]:
                    component = []
                    while True:
                        m = stack.pop()
                        on_stack.discard(m)
                        component.append(m)
                        if m == node:
                            break
                    if len(component) > 1:
                        found.append(sorted(component))
            elif child not in index:
                index[child] = low[child] = counter
                counter += 1
                stack.append(child)
                on_stack.add(child)
                work.append((child, iter(sorted(graph[child]))))
            elif child in on_stack:
                low[node] = min(low[node], index[child])
    return sorted(found)


def check(root: Path) -> list[str]:
    """Every broken rule, as a line of text; empty when the layering holds."""
    modules, edges = project_imports(root)
    problems = rule_breaks(edges)
    problems += [f"import circle: {' -> '.join(c)}" for c in circles(modules, edges)]
    return problems


def main(argv: list[str] | None = None) -> int:
    root = Path(argv[0]) if argv else Path(__file__).resolve().parent.parent
    problems = check(root)
    for line in problems:
        print(line)
    print("ok" if not problems else f"{len(problems)} problem(s)")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
