"""The package's layout, read from its source: imports flow one way, and the library never reaches
into the app."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PACKAGE = ROOT / "koclip"
APP_ONLY = ("streamlit", "demo", "pages")


def module_name(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imports(path: Path) -> set[str]:
    """Every module `path` imports, at its top or inside a function (a lazy import counts too)."""
    package = module_name(path) if path.name == "__init__.py" else module_name(path).rpartition(".")[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                base = ".".join(
                    package.split(".")[: len(package.split(".")) - node.level + 1] + ([base] if base else [])
                )
            found.add(base)
            found |= {f"{base}.{alias.name}" for alias in node.names}
    return found


def graph() -> dict[str, set[str]]:
    modules = {module_name(path): path for path in PACKAGE.rglob("*.py") if "assets" not in path.parts}
    return {
        name: {other for other in imports(path) if other in modules and other != name} for name, path in modules.items()
    }


def cycles(edges: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components of more than one module (Tarjan)."""
    index, low, stack, on_stack, found = {}, {}, [], set(), []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for other in edges[node]:
            if other not in index:
                visit(other)
                low[node] = min(low[node], low[other])
            elif other in on_stack:
                low[node] = min(low[node], index[other])
        if low[node] == index[node]:
            component = []
            while True:
                other = stack.pop()
                on_stack.discard(other)
                component.append(other)
                if other == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for node in sorted(edges):
        if node not in index:
            visit(node)
    return found


def test_the_package_has_no_import_cycles():
    edges = graph()
    # The package's __init__ names its lazy exports; a module importing `koclip` itself takes a leaf.
    edges = {name: others - {"koclip"} for name, others in edges.items()}
    assert cycles(edges) == []


def test_the_library_never_imports_the_app():
    reached = {
        path.relative_to(ROOT).as_posix(): sorted(name for name in imports(path) if name.split(".")[0] in APP_ONLY)
        for path in PACKAGE.rglob("*.py")
    }
    assert {path: names for path, names in reached.items() if names} == {}


def test_the_cycle_finder_finds_a_cycle():
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]


def test_old_module_paths_import_the_moved_modules():
    import importlib

    import koclip
    from koclip.search import gallery

    assert importlib.import_module("koclip.gallery") is gallery
    from koclip import train  # noqa: F401  (the name users may have imported)

    assert koclip.train is importlib.import_module("koclip.training.train")
    for name, new in koclip.MOVED.items():
        assert importlib.import_module(f"koclip.{name}") is importlib.import_module(new)


def test_a_split_module_says_where_its_parts_went():
    import importlib

    import pytest

    for old in ("koclip.ann", "koclip.search.ann"):
        with pytest.raises(ModuleNotFoundError, match=r"split into koclip\.search\.exact .*koclip\.search\.tuning"):
            importlib.import_module(old)


def test_every_public_class_and_function_of_the_library_has_a_docstring():
    missing = []
    for path in sorted(PACKAGE.rglob("*.py")):

        def walk(body, prefix=""):
            for node in body:
                if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)) and node.name[0] != "_":
                    if ast.get_docstring(node) is None:
                        missing.append(f"{path.relative_to(ROOT)}:{node.lineno} {prefix}{node.name}")
                    if isinstance(node, ast.ClassDef):
                        walk(node.body, node.name + ".")

        walk(ast.parse(path.read_text(encoding="utf-8")).body)
    assert missing == []
