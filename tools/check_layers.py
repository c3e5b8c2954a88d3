"""The layering check `make lint` runs: imports point one way, no cycles, no private names.

Reads every module of the distribution as source (nothing is imported, so it is instant and
needs no installed package) and checks, for every import statement — module level and the
lazy ones inside functions alike, since a lazy import is still a dependency:

1. layers: core <- generators, detectors <- audit <- cli. The core (``deepaudit.*`` outside
   the layers) imports no layer; ``generators`` and ``detectors`` import only the core and
   themselves; ``audit`` imports the core, ``detectors`` and itself; the CLI anything.
2. one namespace: nothing imports the folders by their bare names (``import detectors``);
   tests and benchmarks are checked for this too.
3. no private names across modules (``from m import _helper``); private *modules* such as
   ``_registry`` are fine, as in timm.
4. no import cycles between modules.

Exit status 1 with one line per violation, 0 when clean. ``--root DIR`` checks another tree
(the tests use it on a copy with a deliberate violation).
"""

from __future__ import annotations

import argparse
import ast
import sys
from pathlib import Path

# import name -> folder of the repository (as in pyproject's package-dir)
PACKAGES = {
    "deepaudit": "deepaudit",
    "deepaudit.generators": "generators",
    "deepaudit.detectors": "detectors",
    "deepaudit.audit": "audit",
}
BARE = ("generators", "detectors", "audit")
# layer -> the layers it may import
ALLOWED = {
    "core": {"core"},
    "generators": {"core", "generators"},
    "detectors": {"core", "detectors"},
    "audit": {"core", "detectors", "audit"},
    "cli": {"core", "generators", "detectors", "audit", "cli"},
}
EXTRA_TREES = ("tests", "benchmarks", "tools")  # checked for bare-name imports only


def layer_of(module: str) -> str:
    parts = module.split(".")
    if parts[0] != "deepaudit":
        raise ValueError(module)
    if len(parts) > 1 and parts[1] in ("generators", "detectors", "audit", "cli"):
        return parts[1]
    if module == "deepaudit.__main__":
        return "cli"
    return "core"


def discover(root: Path) -> dict[str, Path]:
    """Module name -> source file, for every module of the distribution."""
    modules: dict[str, Path] = {}
    for name, folder in PACKAGES.items():
        base = root / folder
        for path in sorted(base.rglob("*.py")):
            rel = path.relative_to(base).with_suffix("")
            parts = [p for p in rel.parts if p != "__init__"]
            if name == "deepaudit" and parts and parts[0] in BARE:
                continue  # never: the layers live in their own folders
            modules[".".join([name, *parts])] = path
    return modules


def _resolve_relative(module: str, is_pkg: bool, level: int, target: str | None) -> str:
    parts = module.split(".")
    base = parts if is_pkg else parts[:-1]
    base = base[: len(base) - (level - 1)] if level > 1 else base
    return ".".join([*base, target] if target else base)


def imports_of(module: str, path: Path) -> list[tuple[int, str, list[str]]]:
    """(line, imported module, names) for every import in the file."""
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    out = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                out.append((node.lineno, alias.name, []))
        elif isinstance(node, ast.ImportFrom):
            target = node.module
            if node.level:
                target = _resolve_relative(
                    module, path.name == "__init__.py", node.level, node.module
                )
            out.append((node.lineno, target or "", [a.name for a in node.names]))
    return out


def check(root: Path) -> list[str]:
    modules = discover(root)
    problems: list[str] = []
    graph: dict[str, set[str]] = {m: set() for m in modules}
    for module, path in modules.items():
        src_layer = layer_of(module)
        rel = path.relative_to(root)
        for line, target, names in imports_of(module, path):
            where = f"{rel}:{line}"
            top = target.split(".")[0]
            if top in BARE:
                problems.append(f"{where}: imports {target!r}; use 'deepaudit.{target}'")
                continue
            if top != "deepaudit":
                continue
            # `from pkg import sub` names a submodule when one exists
            targets = [f"{target}.{n}" for n in names if f"{target}.{n}" in modules]
            if len(targets) < len(names) or not names:
                targets.append(target)
            for t in targets:
                dst_layer = layer_of(t)
                if dst_layer not in ALLOWED[src_layer]:
                    problems.append(
                        f"{where}: {src_layer} module {module} imports {t} ({dst_layer} layer); "
                        f"{src_layer} may import only {', '.join(sorted(ALLOWED[src_layer]))}"
                    )
                if t in modules and t != module:
                    graph[module].add(t)
            for n in names:
                private = n.startswith("_") and not n.startswith("__")
                if private and f"{target}.{n}" not in modules and target != module:
                    problems.append(f"{where}: imports private name {n!r} from {target}")
    for cycle in _cycles(graph):
        problems.append(f"import cycle among {len(cycle)} modules: {', '.join(cycle)}")
    for tree in EXTRA_TREES:
        for path in sorted((root / tree).rglob("*.py")) if (root / tree).is_dir() else []:
            for line, target, _ in imports_of("tests.x", path):
                if target.split(".")[0] in BARE:
                    rel = path.relative_to(root)
                    problems.append(f"{rel}:{line}: imports {target!r}; use 'deepaudit.{target}'")
    return problems


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan, iterative)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    on_stack: set[str] = set()
    stack: list[str] = []
    out: list[list[str]] = []
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
            node, it = work[-1]
            advanced = False
            for nxt in it:
                if nxt not in index:
                    index[nxt] = low[nxt] = counter
                    counter += 1
                    stack.append(nxt)
                    on_stack.add(nxt)
                    work.append((nxt, iter(sorted(graph[nxt]))))
                    advanced = True
                    break
                if nxt in on_stack:
                    low[node] = min(low[node], index[nxt])
            if advanced:
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[node])
            if low[node] == index[node]:
                comp = []
                while True:
                    m = stack.pop()
                    on_stack.discard(m)
                    comp.append(m)
                    if m == node:
                        break
                if len(comp) > 1:
                    out.append(sorted(comp))
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--root", type=Path, default=Path(__file__).resolve().parents[1])
    args = parser.parse_args(argv)
    problems = check(args.root)
    for p in problems:
        print(p)
    n = len(discover(args.root))
    if problems:
        print(f"layers: {len(problems)} problem(s) in {n} modules", file=sys.stderr)
        return 1
    print(f"layers: {n} modules, imports point one way, no cycles")
    return 0


if __name__ == "__main__":
    sys.exit(main())
