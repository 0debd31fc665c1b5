"""The stack the package listing shows (README, "Layout"): every import, at the top of a module
or inside a function, points down it, never up and never across to a sibling stage."""

import ast
import pathlib

import diffimg

PACKAGE = pathlib.Path(diffimg.__file__).parent

# lowest first; the stages of one rank never import each other
STACK = [("root",), ("windows",), ("system",), ("tree",), ("scan",), ("target",), ("image",),
         ("make", "restore", "deliver"), ("hostlayers",), ("cli",)]
RANK = {stage: rank for rank, stages in enumerate(STACK) for stage in stages}
# the delivery of whole images needs nothing of trees, targets or restores
ONLY = {"deliver": {"deliver", "image", "system", "root"}}


def stage_of(name: str) -> str:
    """The stage of diffimg.STAGE[.module[.name]]; anything else of diffimg (a top-level module,
    a name in one) is the root's."""
    parts = name.split(".")
    if name == "diffimg.__main__":
        return "cli"
    return parts[1] if len(parts) > 1 and (PACKAGE / parts[1]).is_dir() else "root"


def modules():
    for path in sorted(PACKAGE.rglob("*.py")):
        parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
        is_package = parts[-1] == "__init__"
        yield ".".join(parts[:-1] if is_package else parts), is_package, path


def imported(module: str, is_package: bool, path) -> list[tuple[int, str]]:
    """(line, what) of each import of diffimg's in path: a module, or a name in one."""
    here = module.split(".") if is_package else module.split(".")[:-1]
    found = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found += [(node.lineno, a.name) for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                base = ".".join(here[:len(here) - node.level + 1] + ([base] if base else []))
            found += [(node.lineno, f"{base}.{a.name}") for a in node.names]
    return [(line, name) for line, name in found if name.split(".")[0] == "diffimg"]


def arrows_against_the_stack() -> list[str]:
    bad = []
    for module, is_package, path in modules():
        stage = stage_of(module)
        for line, target in imported(module, is_package, path):
            to = stage_of(target)
            if to != stage and (RANK[to] >= RANK[stage] or to not in ONLY.get(stage, {to})):
                bad.append(f"{module}:{line} ({stage}) imports {target} ({to})")
    return bad


def test_every_import_points_down_the_stack():
    assert arrows_against_the_stack() == []


def test_every_module_is_in_a_stage():
    stages = {stage_of(module) for module, _, _ in modules()}
    assert stages <= set(RANK), stages - set(RANK)
    assert {p.name for p in PACKAGE.iterdir() if p.is_dir() and (p / "__init__.py").exists()} \
        == set(RANK) - {"root"}


def test_an_arrow_up_the_stack_is_found(tmp_path, monkeypatch):
    """The check itself: a module of the root importing from cli/ is reported."""
    fake = tmp_path / "diffimg"
    (fake / "cli").mkdir(parents=True)
    (fake / "__init__.py").write_text("")
    (fake / "cli" / "__init__.py").write_text("")
    (fake / "errors.py").write_text("def f():\n    from .cli import main\n")
    monkeypatch.setitem(globals(), "PACKAGE", fake)
    assert arrows_against_the_stack() == ["diffimg.errors:2 (root) imports diffimg.cli.main (cli)"]
