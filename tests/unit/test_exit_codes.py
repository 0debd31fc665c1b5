"""Exit codes live in one place (errors.Exit), and spec/cli.md's table lists exactly them."""

import ast
import pathlib
import re

import diffimg
from diffimg import errors
from diffimg.errors import DiffimgError, Exit

PACKAGE = pathlib.Path(diffimg.__file__).parent
SPEC = PACKAGE.parent / "spec" / "cli.md"


def spec_codes() -> set[int]:
    """The codes of spec/cli.md's "Exit codes" table."""
    text = SPEC.read_text()
    table = text[text.index("## Exit codes"):]
    table = table[:table.index("\n## ", 1)]
    return {int(code) for code in re.findall(r"^\| (\d+) \|", table, re.M)}


def test_the_spec_table_lists_every_exit_code_and_no_other():
    assert spec_codes() == {int(code) for code in Exit}


def test_every_error_class_exits_with_a_code_of_the_table():
    classes = [c for c in vars(errors).values() if isinstance(c, type) and issubclass(c, DiffimgError)]
    assert len(classes) > 15
    for c in classes:
        assert isinstance(c.exit_code, Exit), c


def test_no_module_writes_an_exit_code_of_its_own():
    """An exit code is an Exit member: no error class elsewhere sets a number, and no command
    returns or exits with one (0, success, aside; a forked worker's own exit is not the CLI's)."""
    found = []
    for path in PACKAGE.rglob("*.py"):
        if path.name == "errors.py" and path.parent == PACKAGE:
            continue
        is_cli = path.parent.name == "cli"
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Assign) and isinstance(node.value, ast.Constant) and any(
                    isinstance(t, ast.Name) and t.id == "exit_code" for t in node.targets):
                found.append(f"{path.name}:{node.lineno}")
            if is_cli and isinstance(node, ast.Return) and isinstance(node.value, ast.Constant) \
                    and type(node.value.value) is int and node.value.value != 0:
                found.append(f"{path.name}:{node.lineno}")
            exits = isinstance(node, ast.Call) and getattr(node.func, "attr", None) in ("exit", "_exit")
            if is_cli and exits and node.args and isinstance(node.args[0], ast.Constant) \
                    and node.args[0].value:
                found.append(f"{path.name}:{node.lineno}")
    assert found == []
