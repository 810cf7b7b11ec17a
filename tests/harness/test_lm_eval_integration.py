"""lm-eval the way its users expect (issue 17): `chexbench lm-eval ls tasks` lists our 16 tasks
and 8 groups quickly (only our folder indexed), `--tasks list` is answered, `--adapter-file`
is accepted, our `hf` adapter is `chexbench-hf` (lm-eval's own `hf` is refused on our tasks),
a missing data file is one line, and the documented Python recipe
(docs/evaluate-any-model.md) runs as written on phantom data with the smoke CheXagent.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml
from helpers.tiny_vlms import write_tiny_vlm

from harness.cli import main
from harness.phantom import generate_phantom

pytestmark = pytest.mark.usefixtures("single_thread")

ROOT = Path(__file__).resolve().parents[2]
TASKS = ROOT / "tasks" / "chexbench"
DOC = ROOT / "docs" / "evaluate-any-model.md"
EXAMPLE = ROOT / "docs" / "adapters" / "example_adapter.py"
TASK = "chexbench_view_classification_mimic_cxr"


def _expected() -> tuple[set[str], set[str]]:
    """Task and group names from the YAML files themselves."""
    tasks = {p.stem for p in TASKS.glob("chexbench_*.yaml")}
    groups = {yaml.safe_load(p.read_text())["group"] for p in TASKS.glob("_group_*.yaml")}
    return tasks, groups


def _listed(out: str) -> set[str]:
    return set(re.findall(r"^\|(chexbench\w*)\s*\|", out, flags=re.MULTILINE))


@pytest.fixture(scope="module")
def phantom(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("lm_eval")
    generate_phantom(root / "phantom", n_per_pair=1, seed=0, image_size=64, n_text=1, n_fairness=0)
    return root


def test_ls_tasks_lists_our_16_tasks_and_8_groups_quickly(capsys):
    tasks, groups = _expected()
    assert (len(tasks), len(groups)) == (16, 8)
    assert main(["lm-eval", "ls", "tasks"]) == 0
    out = capsys.readouterr().out
    assert _listed(out) == tasks | groups
    assert "hellaswag" not in out  # lm-eval's own ~14,000 task files were not indexed
    assert main(["lm-eval", "ls", "groups"]) == 0
    assert _listed(capsys.readouterr().out) == groups


def test_tasks_list_is_answered_not_a_traceback(capsys):
    assert main(["lm-eval", "run", "--model", "chexagent", "--tasks", "list"]) == 0
    tasks, groups = _expected()
    assert _listed(capsys.readouterr().out) == tasks | groups


def test_lm_evals_own_hf_is_refused_naming_chexbench_hf(capsys):
    rc = main(["lm-eval", "run", "--model", "hf", "--model_args", "pretrained=x", "--tasks", TASK])
    err = capsys.readouterr().err
    assert rc == 2 and err.count("\n") == 1
    assert "--model chexbench-hf" in err


def test_missing_data_file_is_one_line(capsys):
    rc = main(
        [
            "lm-eval",
            "run",
            "--model",
            "chexagent",
            "--model_args",
            "pretrained=smoke,device=cpu",
            "--tasks",
            TASK,
        ]
    )
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 2 and err[-1].startswith("error: task ") and "--metadata" in err[-1]


def test_adapter_file_and_chexbench_hf_run(phantom, tmp_path, capsys):
    folder = write_tiny_vlm("llava", tmp_path / "llava", byte_level=True)
    meta = f'{{"data": "{phantom}/phantom/data.json", "image_root": "{phantom}/phantom"}}'
    args = f"pretrained={folder},device=cpu,dtype=float32"
    for model, extra in (("my_llava", ["--adapter-file", str(EXAMPLE)]), ("chexbench-hf", [])):
        rc = main(
            [
                "lm-eval",
                "run",
                "--model",
                model,
                *extra,
                "--model_args",
                args,
                "--tasks",
                TASK,
                "--metadata",
                meta,
                "--limit",
                "2",
            ]
        )
        out = capsys.readouterr().out
        assert rc == 0, out
        assert re.search(rf"\|{TASK}\s*\|.*\|acc\s*\|", out), out


def _recipe() -> str:
    """The Python block of docs/evaluate-any-model.md that uses simple_evaluate."""
    blocks = re.findall(r"```python\n(.*?)```", DOC.read_text(), flags=re.DOTALL)
    (code,) = [b for b in blocks if "simple_evaluate" in b]
    return code


def test_documented_simple_evaluate_recipe_runs(phantom, monkeypatch, capsys):
    monkeypatch.chdir(phantom)  # the recipe's paths are relative: phantom/data.json
    namespace: dict = {}
    exec(compile(_recipe(), str(DOC), "exec"), namespace)  # noqa: S102 - the docs' own code
    result = namespace["out"]["results"][TASK]
    assert 0.0 <= result["acc_chexbench,none"] <= 1.0
    assert capsys.readouterr().out.strip().splitlines()[-1] == str(result["acc_chexbench,none"])


def test_lm_evals_metadata_is_dropped_with_a_task_manager(phantom):
    """Why the recipe exists: lm-eval's own call with metadata= and a task manager never
    gives the tasks their data file."""
    import lm_eval
    from lm_eval.tasks import TaskManager

    from harness.data import DataError
    from harness.lm_eval_api import register_models
    from harness.run_card import TASKS_DIR

    register_models()
    with pytest.raises(DataError, match="no data file given"):
        lm_eval.simple_evaluate(
            model="chexagent",
            model_args="pretrained=smoke,device=cpu",
            tasks=[TASK],
            task_manager=TaskManager(include_path=str(TASKS_DIR), include_defaults=False),
            metadata={"data": str(phantom / "phantom" / "data.json")},
            limit=1,
        )
