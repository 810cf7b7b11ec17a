"""The data.json loader against the quirks of the official file."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from harness.data import DataError, load_data
from harness.images import ImageResolver


def _mc(**overrides) -> dict:
    item = {
        "data_source": "MIMIC-CXR",
        "image_path": "data/mimic-cxr/files/p10/p10000032/s50000001/a.png",
        "question": "What is the view of this chest X-ray?",
        "option_0": "AP",
        "option_1": "PA",
        "option_2": "Lateral",
        "option_3": "LL",
        "answer": 1,
    }
    item.update(overrides)
    return item


def _write(tmp_path: Path, obj: object, name: str = "data.json") -> Path:
    path = tmp_path / name
    path.write_text(json.dumps(obj, ensure_ascii=False), encoding="utf-8")
    return path


def test_null_and_nan_options_are_dropped_and_2_to_4_options_kept(tmp_path):
    items = [
        _mc(),
        _mc(option_3=None),
        _mc(option_2=None, option_3=None, answer=0),
        _mc(option_2=float("nan"), option_3=float("nan"), answer=1),
    ]
    path = _write(tmp_path, {"View Classification": items})
    assert "NaN" in path.read_text()  # written as the bare token, as pandas-made files are
    data = load_data(path)
    assert [len(i.options) for i in data.perception] == [4, 3, 2, 2]
    assert data.perception[3].options == ["AP", "PA"]
    assert data.perception[0].cluster_id == "p10000032"


def test_a_gap_in_the_options_is_refused_saying_how_answer_counts(tmp_path):
    # The official code drops null options and `answer` indexes the options that REMAIN, so a
    # gap silently moves the answer; a file that means the raw index would be scored wrong.
    path = _write(
        tmp_path,
        {
            "Visual Question Answering": [
                {
                    "data_source": "Rad-Restruct",
                    "image_path": "data/rad-restruct/images/1.png",
                    "question": "How large?",
                    "option_0": "small",
                    "option_1": float("nan"),
                    "option_2": "large",
                    "option_3": None,
                    "answer": 1,
                }
            ]
        },
    )
    with pytest.raises(DataError) as exc:
        load_data(path)
    message = str(exc.value)
    assert "'Visual Question Answering', item 0" in message
    assert "option_1 is NaN but option_2 is not" in message
    assert "answer 1 means option_2, not option_1" in message
    assert "run_likelihood.py:73-75" in message


def test_multi_image_paths_as_pipe_string_and_as_list(tmp_path):
    a = "data/mimic-cxr/files/p10/p10000032/s50000001/a.png"
    b = "data/mimic-cxr/files/p10/p10000032/s50000001/b.png"
    path = _write(
        tmp_path,
        {
            "Multiple Disease Identification": [
                _mc(image_path=f"{a}|{b}", question="Which?"),
                _mc(image_path=[a, b], question="Which?"),
            ],
            "Findings Generation": [
                {
                    "data_source": "MIMIC-CXR",
                    "image_path": [a, b],
                    "section_indication": "cough",
                    "section_findings": "clear",
                }
            ],
        },
    )
    data = load_data(path)
    assert [i.image_paths for i in data.perception] == [[a, b], [a, b]]
    assert data.text[0].image_paths == [a, b] and data.text[0].reference == "clear"


def test_unicode_in_questions_and_options_survives(tmp_path):
    path = _write(
        tmp_path,
        {
            "Single Disease Identification": [
                _mc(
                    data_source="OpenI",
                    image_path="data/openi/images/CXR1_IM-0001-1001.png",
                    question="Welcher Befund? — 肺 “quoted”",
                    option_0="Pleuraerguss ≥ 2 cm",
                    option_1="énorme cœur",
                    option_2="无",
                    option_3="ok",
                    answer=2,
                )
            ]
        },
    )
    item = load_data(path).perception[0]
    assert item.question == "Welcher Befund? — 肺 “quoted”"
    assert item.options[:3] == ["Pleuraerguss ≥ 2 cm", "énorme cœur", "无"]


def test_fine_grained_reasoning_is_image_text_reasoning(tmp_path):
    path = _write(
        tmp_path,
        {
            "Fine-Grained Reasoning": [
                _mc(
                    data_source="OpenI",
                    image_path="data/openi/images/CXR2_IM-0002-1001.png",
                    option_0="left-sided pleural effusion",
                    option_1="right-sided pleural effusion",
                    option_2=None,
                    option_3=None,
                    answer=0,
                )
            ]
        },
    )
    assert load_data(path).perception[0].task == "image_text_reasoning"


def test_answer_out_of_range_names_file_task_and_item(tmp_path):
    path = _write(tmp_path, {"View Classification": [_mc(), _mc(option_3=None, answer=3)]})
    with pytest.raises(DataError) as exc:
        load_data(path)
    message = str(exc.value)
    assert str(path) in message and "'View Classification'" in message and "item 1" in message
    assert "out of range" in message


@pytest.mark.parametrize(
    "content, expected",
    [
        ('{"View Classification": [{"data_source": "MIMIC-CXR", "image_p', "not valid JSON"),
        ('[{"question": "q"}]', "expected a JSON object keyed by task name"),
        ('{"View Classification": {"a": 1}}', "must map to a list"),
        ('{"Chest Astrology": []}', "unknown task key"),
    ],
)
def test_malformed_files_give_a_clear_error(tmp_path, content, expected):
    path = tmp_path / "bad.json"
    path.write_text(content, encoding="utf-8")
    with pytest.raises(DataError, match=expected) as exc:
        load_data(path)
    assert str(path) in str(exc.value)


def test_unknown_data_source_and_missing_file(tmp_path):
    path = _write(tmp_path, {"View Classification": [_mc(data_source="NotADataset")]})
    with pytest.raises(
        DataError, match=r"'View Classification', item 0: unknown data_source 'NotADataset'"
    ):
        load_data(path)
    with pytest.raises(DataError, match="StanfordAIMI/chexbench"):
        load_data(tmp_path / "absent.json")


def test_image_map_prefixes_and_sources_resolve(tmp_path):
    mapping = tmp_path / "map.yaml"
    mapping.write_text(
        "prefixes:\n  data/mimic-cxr/: /datasets/mimic/2.0.0/\n"
        "  data/mimic-cxr/files/p10/: /fast/p10/\n"
        "sources:\n  OpenI: /datasets/openi/\n",
        encoding="utf-8",
    )
    r = ImageResolver.from_args(tmp_path / "root", mapping)
    # Longest matching prefix wins; the rest of the path is kept.
    assert r.resolve("data/mimic-cxr/files/p10/p1/s1/a.png", "mimic_cxr") == Path(
        "/fast/p10/p1/s1/a.png"
    )
    assert r.resolve("data/mimic-cxr/files/p11/a.png", "mimic_cxr") == Path(
        "/datasets/mimic/2.0.0/files/p11/a.png"
    )
    # A data_source folder replaces the authors' data/<name>/ root.
    assert r.resolve("data/openi/images/CXR1.png", "openi") == Path(
        "/datasets/openi/images/CXR1.png"
    )
    # Everything else hangs off the image root.
    assert r.resolve("data/slake/imgs/xmlab1/source.png", "slake") == (
        tmp_path / "root" / "data/slake/imgs/xmlab1/source.png"
    )
    bad = tmp_path / "bad.yaml"
    bad.write_text("sources:\n  Atlantis: /x\n", encoding="utf-8")
    with pytest.raises(ValueError, match="unknown data_source 'Atlantis'"):
        ImageResolver.from_args(None, bad)
