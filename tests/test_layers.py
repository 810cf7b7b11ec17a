"""The packages form layers that point one way: a module imports only its own layer or lower.

core (errors, io, taxonomy, data, images, results schema and writer, the MC rules, phantom
data) < model definitions (the chexagent architecture) < engine, adapters and task hooks <
analyses (runs, statistics, text metrics, judge, fairness, reader study, training, leaderboard
data) < interfaces (the CLIs and the Streamlit app). Every import counts, including those
inside functions. docs/architecture.md draws the same picture.
"""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("harness", "model_adapters", "chexagent", "leaderboard", "tasks")

# Longest matching prefix decides a module's layer.
LAYERS: dict[str, int] = {
    "harness": 0,
    "harness.phantom": 0,
    "harness.text_metrics.cleaning": 0,
    "harness.text_metrics.rouge": 0,
    "chexagent": 1,
    "model_adapters": 2,
    "tasks": 2,
    "harness.runner": 3,
    "harness.multiprocess": 3,
    "harness.conformance": 3,
    "harness.lm_eval_api": 3,
    "harness.prompt_lengths": 3,
    "harness.results_builder": 3,
    "harness.text_results": 3,
    "harness.saved_predictions": 3,
    "harness.tables": 3,
    "harness.stats": 3,
    "harness.text_metrics": 3,
    "harness.judge": 3,
    "harness.fairness": 3,
    "harness.reader_study": 3,
    "chexagent.evaluate": 3,
    "chexagent.training": 3,
    "chexagent.instruct": 3,
    "chexagent.demo": 3,
    "leaderboard": 3,
    "harness.cli": 4,
    "harness.commands": 4,
    "chexagent.cli": 4,
    "leaderboard.app": 4,
    "leaderboard.views": 4,
}
NAMES = ("core", "model definitions", "engine and adapters", "analyses", "interfaces")


def layer(module: str) -> int:
    parts = module.split(".")
    for n in range(len(parts), 0, -1):
        prefix = ".".join(parts[:n])
        if prefix in LAYERS:
            return LAYERS[prefix]
    raise KeyError(module)


def modules() -> dict[str, Path]:
    found = {}
    for package in PACKAGES:
        for path in (ROOT / package).rglob("*.py"):
            name = ".".join(path.relative_to(ROOT).with_suffix("").parts)
            found[name.removesuffix(".__init__")] = path
    return found


def imports(path: Path, module: str) -> set[str]:
    out: set[str] = set()
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            out.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*anchor, base] if base else anchor)
            out.add(base)
            out.update(f"{base}.{a.name}" for a in node.names)
    return {m for m in out if m.split(".")[0] in PACKAGES}


def test_no_module_imports_a_higher_layer():
    mods = modules()
    upward = []
    for module, path in sorted(mods.items()):
        mine = layer(module)
        for target in sorted(imports(path, module)):
            if target not in mods and target.rpartition(".")[0] in mods:
                target = target.rpartition(".")[0]  # `from pkg.mod import name`
            if target in mods and layer(target) > mine:
                upward.append(f"{module} ({NAMES[mine]}) imports {target} ({NAMES[layer(target)]})")
    assert not upward, "\n".join(upward)


def test_every_module_has_a_layer():
    for module in modules():
        layer(module)


def test_the_checker_sees_function_level_imports(tmp_path):
    probe = tmp_path / "probe.py"
    probe.write_text("def f():\n    from harness.cli import main\n")
    assert "harness.cli" in imports(probe, "harness.io")
