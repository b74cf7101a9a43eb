"""The package's layout holds: every import (also inside functions and under TYPE_CHECKING) points down the layers
that docs/pieces.md describes, so the import graph has no cycle, no library module imports a command or the public
classes above it, and no command imports another."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "mdlm_dna"
COMMANDS = ("pretrain", "finetune", "evaluate", "sample", "score", "embed", "export", "predict", "vep", "track",
            "prepare")
# bottom to top; a unit imports only units of lower layers (the package face mdlm_dna/__init__.py is on top)
LAYERS: list[tuple[str, ...]] = [
    ("utils",),
    ("models", "data"),
    ("diffusion",),
    ("train",),
    ("artifacts",),
    ("cli",),
    ("evaluation", "analysis"),
    ("classifier",),
    ("api",),
    COMMANDS,
    ("mdlm_dna",),
]
LAYER_OF = {unit: i for i, units in enumerate(LAYERS) for unit in units}
REMOTE_CODE = PACKAGE / "artifacts" / "hf_export"  # copied into exports; imports no mdlm_dna (tested in test_hf_export)


def unit_of(module: str) -> str:
    """``mdlm_dna.data.fasta`` -> ``data``; ``mdlm_dna.api`` -> ``api``; ``mdlm_dna`` -> ``mdlm_dna``."""
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else "mdlm_dna"


def module_name(path: Path) -> str:
    rel = path.relative_to(PACKAGE.parent).with_suffix("")
    return ".".join(rel.parts).removesuffix(".__init__")


def imports(path: Path, text: str | None = None) -> list[tuple[int, str]]:
    """Every ``mdlm_dna`` module the file at ``path`` (or ``text`` as if it stood there) imports, with its line:
    absolute and relative imports, at any depth."""
    found = []
    package = module_name(path) if path.name == "__init__.py" else module_name(path).rpartition(".")[0]
    for node in ast.walk(ast.parse(path.read_text() if text is None else text, str(path))):
        if isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - (node.level - 1)]
                base = ".".join([*anchor, *([base] if base else [])])
            names = [f"{base}.{a.name}" if base == "mdlm_dna" else base for a in node.names]
            found += [(node.lineno, n) for n in names if n.split(".")[0] == "mdlm_dna"]
        elif isinstance(node, ast.Import):
            found += [(node.lineno, a.name) for a in node.names if a.name.split(".")[0] == "mdlm_dna"]
    return found


def library_files() -> list[Path]:
    return [p for p in sorted(PACKAGE.rglob("*.py")) if REMOTE_CODE not in p.parents or p.name in
            ("__init__.py", "classifier_export.py")]


def violations(files: list[Path], texts: dict[Path, str] | None = None) -> list[str]:
    wrong = []
    for path in files:
        source = unit_of(module_name(path))
        for line, target_module in imports(path, (texts or {}).get(path)):
            target = unit_of(target_module)
            if target == source:
                continue
            if source not in LAYER_OF or target not in LAYER_OF:
                wrong.append(f"{path.relative_to(PACKAGE.parent)}:{line}: {target_module}: a unit LAYERS does not know")
            elif LAYER_OF[target] >= LAYER_OF[source]:
                wrong.append(f"{path.relative_to(PACKAGE.parent)}:{line}: {source} imports {target_module} "
                             f"(layer {LAYER_OF[target]}, not below {LAYER_OF[source]})")
    return wrong


def test_every_import_points_down_the_layers():
    assert violations(library_files()) == []


def test_every_top_level_module_and_sub_package_has_a_layer():
    units = {p.stem for p in PACKAGE.glob("*.py") if p.name != "__init__.py"}
    units |= {p.name for p in PACKAGE.iterdir() if (p / "__init__.py").is_file()}
    assert units - set(LAYER_OF) == set()


def test_the_top_level_holds_only_the_public_classes_and_the_commands():
    top = {p.stem for p in PACKAGE.glob("*.py") if p.name != "__init__.py"}
    assert top == {"api", "classifier", *COMMANDS}


@pytest.mark.parametrize("place, line", [
    ("data/fasta.py", "from mdlm_dna.api import DiffusionLM"),       # a library module importing the public class
    ("train/ema.py", "    from mdlm_dna.artifacts import checkpoints"),  # upward, lazily inside a function
    ("sample.py", "from .pretrain import run"),                      # a command importing another, relatively
    ("models/dit.py", "from mdlm_dna.newthing import x"),           # a unit LAYERS does not know
])
def test_an_import_against_the_layers_is_caught(place, line):
    """The check itself can fail: each probe is one line added to a real module's text (nothing is written)."""
    path = PACKAGE / place
    text = path.read_text() + ("\ndef _probe():\n" + line + "\n" if line.startswith(" ") else "\n" + line + "\n")
    assert violations([path]) == []
    assert len(violations([path], {path: text})) == 1
