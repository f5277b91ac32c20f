"""The package's rooms hold: who imports whom, one definition of each name of the
vocabulary, one owner of each path, the bundle's contract in the package. Read from the
source (AST), so a function-level import counts as much as a module-level one."""

import ast
import re
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
PACKAGE = REPO / "workflow_scripts" / "genreflow"


def _module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES = {_module_name(path): path for path in PACKAGE.rglob("*.py")}


def _imports(path: Path) -> set[str]:
    """Every genreflow module `path` imports, at any depth (functions included)."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("genreflow"):
            for alias in node.names:
                name = f"{node.module}.{alias.name}"
                found.add(name if name in MODULES else node.module)
        elif isinstance(node, ast.Import):
            found.update(a.name for a in node.names if a.name.startswith("genreflow"))
    return found


def _room(module: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else "genreflow"


def _rooms_imported(room: str) -> set[str]:
    return {_room(target) for module, path in MODULES.items() if _room(module) == room
            for target in _imports(path)} - {room}


def test_tuning_and_final_training_never_import_each_other():
    assert "evaluation" not in _rooms_imported("tuning")
    assert "tuning" not in _rooms_imported("evaluation")


@pytest.mark.parametrize("room, below", [
    # the models stand on the vocabulary and the shared tools, never on a stage
    ("models", {"hyperparameters", "io", "names", "registry", "scoring"}),
    ("names", set()),
    ("hyperparameters", set()),
    ("plan", {"names"}),
    ("plots", {"io", "journal", "names", "run_info"}),
])
def test_rooms_import_only_what_is_below_them(room, below):
    assert _rooms_imported(room) <= below


def _string_constants(path: Path) -> list[str]:
    """String literals of a module, its docstrings left out."""
    tree = ast.parse(path.read_text())
    docstrings = {id(node.body[0].value) for node in ast.walk(tree)
                  if isinstance(node, (ast.Module, ast.FunctionDef, ast.ClassDef))
                  and node.body and isinstance(node.body[0], ast.Expr)
                  and isinstance(node.body[0].value, ast.Constant)}
    return [node.value for node in ast.walk(tree) if isinstance(node, ast.Constant)
            and isinstance(node.value, str) and id(node) not in docstrings]


def test_the_vocabulary_is_defined_once():
    from genreflow import names

    defined_elsewhere = {}
    for module, path in MODULES.items():
        if module == "genreflow.names":
            continue
        strings = _string_constants(path)
        for word in (names.BASELINE, *names.MUSICNN_MODELS, *names.MUSICNN_MODELS.values()):
            if word in strings:
                defined_elsewhere.setdefault(word, []).append(module)
        tree = ast.parse(path.read_text())
        for node in ast.walk(tree):
            if isinstance(node, ast.Tuple) and all(isinstance(e, ast.Constant) for e in node.elts):
                values = tuple(e.value for e in node.elts)
                for name in ("SPLITS", "FEATURES", "GTZAN_GENRES"):
                    if values == getattr(names, name):
                        defined_elsewhere.setdefault(name, []).append(module)
    assert defined_elsewhere == {}


def test_one_owner_of_each_path():
    """Only genreflow.plan spells out a results/ or resources/ folder; the rules build
    their paths from its patterns."""
    spelled = []
    for module, path in MODULES.items():
        if module != "genreflow.plan":
            spelled += [(module, s) for s in _string_constants(path)
                        if re.match(r"(results|resources)/", s)]
    for path in [REPO / "Snakefile", *sorted((REPO / "rules").rglob("*.smk"))]:
        code = "\n".join(line.split("#")[0] for line in path.read_text().splitlines())
        spelled += [(path.name, s) for s in re.findall(r'"((?:results|resources)/[^"]*)"', code)]
    assert spelled == []


def test_the_bundle_contract_is_built_in_the_package():
    """The rule passes the workflow's settings; what preprocessing.json holds is built by
    genreflow.predict.bundle."""
    rule_inputs = (REPO / "rules" / "inputs" / "predict.smk").read_text()
    assert "bundle_settings(" in rule_inputs
    for key in ('"scaling":', '"input":', '"feature_block":', '"window_seconds":'):
        assert key not in rule_inputs
    assert "def bundle_settings(" in (PACKAGE / "predict" / "bundle.py").read_text()
