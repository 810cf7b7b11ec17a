"""The lm-eval task YAMLs, the taxonomy table and the published schema stay in step."""

from __future__ import annotations

import json

import yaml

from harness.results_schema import SCHEMA_PATH, json_schema
from harness.run_card import TASKS_DIR
from harness.taxonomy import PERCEPTION_SUBTASKS, resolve_task


class _Loader(yaml.SafeLoader):
    pass


_Loader.add_constructor("!function", lambda loader, node: loader.construct_scalar(node))


def _yaml(name: str) -> dict:
    return yaml.load((TASKS_DIR / name).read_text(), Loader=_Loader)


def test_every_table9_pair_has_a_task_yaml_and_nothing_is_absolute():
    for sub in PERCEPTION_SUBTASKS:
        cfg = _yaml(f"{sub.name}.yaml")
        assert cfg["task"] == sub.name and cfg["dataset_kwargs"]["subtask"] == sub.name
    assert len(PERCEPTION_SUBTASKS) == 14
    for path in TASKS_DIR.glob("*.yaml"):
        text = path.read_text()
        assert "/work/" not in text and "data.json" not in text.split("#")[0], path


def test_groups_cover_their_members():
    perception = _yaml("_group_perception.yaml")
    members = []
    for group in perception["task"]:
        cfg = _yaml(f"_group_{group.removeprefix('chexbench_')}.yaml")
        assert cfg["group"] == group
        members += cfg["task"]
    assert sorted(members) == sorted(s.name for s in PERCEPTION_SUBTASKS)


def test_task_name_aliases_resolve_to_one_task():
    assert resolve_task("Fine-Grained Reasoning").slug == "image_text_reasoning"
    assert resolve_task("Image-Text Reasoning").slug == "image_text_reasoning"
    assert resolve_task("Multiple Disease Identification").slug == "multi_disease_identification"
    assert resolve_task("nonsense") is None


def test_published_schema_matches_the_models():
    assert json.loads(SCHEMA_PATH.read_text()) == json.loads(
        json.dumps(json_schema(), sort_keys=True)
    )
