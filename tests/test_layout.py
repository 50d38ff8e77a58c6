"""The package's shape: no module imports another in a circle (lazy imports inside functions
count; imports for type checkers only, under ``if TYPE_CHECKING:``, never run and do not)."""

import ast
from pathlib import Path

PACKAGE = Path(__file__).parents[1] / "src" / "emosphere"


def imports(module: Path) -> set[str]:
    """The emosphere modules that ``module`` imports anywhere in its body."""
    tree = ast.parse(module.read_text())
    for block in [n for n in ast.walk(tree) if isinstance(n, ast.If) and ast.unparse(n.test) == "TYPE_CHECKING"]:
        block.body = []
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.level == 1:
            found |= {node.module} if node.module else {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and (node.module or "").startswith("emosphere."):
            found.add(node.module.split(".")[1])
    return found & {p.stem for p in PACKAGE.glob("*.py")}


def test_no_import_cycles():
    graph = {p.stem: imports(p) for p in PACKAGE.glob("*.py") if p.stem != "__init__"}
    done: set[str] = set()

    def visit(name: str, path: list[str]) -> None:
        assert name not in path, f"import cycle: {' -> '.join([*path, name])}"
        if name not in done:
            for target in graph.get(name, ()):
                visit(target, [*path, name])
            done.add(name)

    for name in graph:
        visit(name, [])


MODULE_LINES, FUNCTION_LINES = 400, 60


def test_modules_and_functions_stay_small_enough_to_read():
    """No module over 400 lines; no function over 60, unless its docstring gives the reason on a line
    that starts with "Long:"."""
    too_long = []
    for path in sorted(PACKAGE.glob("*.py")):
        text = path.read_text()
        if len(text.splitlines()) > MODULE_LINES:
            too_long.append(f"{path.name}: {len(text.splitlines())} lines")
        for node in ast.walk(ast.parse(text)):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                length = node.end_lineno - node.lineno + 1
                reason = any(line.strip().startswith("Long:") for line in (ast.get_docstring(node) or "").splitlines())
                if length > FUNCTION_LINES and not reason:
                    too_long.append(f"{path.name}: {node.name}() {length} lines")
    assert not too_long, "; ".join(too_long)
