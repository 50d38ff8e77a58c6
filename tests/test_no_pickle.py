"""No file a user hands us is unpickled: pickle runs code from the file.

The scan reads the package's source (AST, not text) and flags pickle-family
imports, ``read_pickle``, ``np.load(allow_pickle=True)`` and any ``torch.load``
without ``weights_only=True``. ``torch.load(..., weights_only=True)`` is allowed:
its restricted unpickler builds only tensors and plain containers and refuses
any other object, so a crafted file cannot run code. The one such call
(train.py) reads the best checkpoint that the run's own Lightning trainer just
wrote; models travel as safetensors + JSON.

One module may import pickle: original.py reads the original recipe's
statistics pickle once, with a subclass of ``pickle.Unpickler`` whose
``find_class`` admits numbers only (tests/test_original.py feeds it an
exploit); it may use nothing of pickle but that base class and its error.
"""

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).parents[1] / "src" / "emosphere"
PICKLE_MODULES = {"pickle", "cPickle", "_pickle", "dill", "joblib", "cloudpickle", "shelve", "marshal"}


def _keyword(call: ast.Call, name: str):
    for keyword in call.keywords:
        if keyword.arg == name:
            return keyword.value.value if isinstance(keyword.value, ast.Constant) else keyword.value
    return None


def unsafe_loads(source: str) -> list[str]:
    """(line: what) for every way ``source`` could unpickle a file."""
    found = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            names = [alias.name for alias in node.names] if isinstance(node, ast.Import) else [node.module or ""]
            found += [f"{node.lineno}: import {n}" for n in names if n.split(".")[0] in PICKLE_MODULES]
        elif isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute):
            owner = node.func.value.id if isinstance(node.func.value, ast.Name) else ""
            name = node.func.attr
            if name in {"read_pickle", "load_pickle"}:
                found.append(f"{node.lineno}: {name}")
            elif owner == "torch" and name == "load" and _keyword(node, "weights_only") is not True:
                found.append(f"{node.lineno}: torch.load without weights_only=True")
            elif owner in {"np", "numpy"} and name == "load" and _keyword(node, "allow_pickle") not in (None, False):
                found.append(f"{node.lineno}: np.load(allow_pickle=...)")
    return found


@pytest.mark.parametrize(
    "source, expected",
    [
        ("import pickle\npickle.load(open('f', 'rb'))", 1),
        ("from joblib import load", 1),
        ("import torch\ntorch.load('x.ckpt')", 1),
        ("import torch\ntorch.load('x.ckpt', weights_only=False)", 1),
        ("import torch\ntorch.load('x.ckpt', map_location='cpu', weights_only=True)", 0),
        ("import numpy as np\nnp.load('x.npy', allow_pickle=True)", 1),
        ("import pandas as pd\npd.read_pickle('x.pkl')", 1),
        ("import numpy as np\nnp.load('x.npy')", 0),
    ],
)
def test_the_scan_finds_unpickling(source, expected):
    assert len(unsafe_loads(source)) == expected


RESTRICTED_UNPICKLER = "original.py"


def test_the_package_never_unpickles_a_file():
    sources = sorted(PACKAGE.rglob("*.py"))
    assert len(sources) > 10
    found = {path.name: unsafe_loads(path.read_text()) for path in sources}
    found[RESTRICTED_UNPICKLER] = [line for line in found[RESTRICTED_UNPICKLER] if not line.endswith("import pickle")]
    assert {name: lines for name, lines in found.items() if lines} == {}


def test_the_restricted_unpickler_uses_only_the_base_class():
    tree = ast.parse((PACKAGE / RESTRICTED_UNPICKLER).read_text())
    used = {
        node.attr
        for node in ast.walk(tree)
        if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) and node.value.id == "pickle"
    }
    assert used == {"Unpickler", "UnpicklingError"}
