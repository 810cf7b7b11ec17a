"""CheXinstruct: processors on fixtures in each dataset's official layout, the Table 7 mix,
held-out datasets, the leakage guard, the store and the report."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from chexagent.instruct.build import build
from chexagent.instruct.leakage import LeakageGuard
from chexagent.instruct.mixing import mix
from chexagent.instruct.processors import PROCESSORS
from chexagent.instruct.processors.base import CHEXPERT_LABELS, MetadataError
from chexagent.instruct.processors.siim import rle_bbox
from chexagent.instruct.ratios import HELD_OUT_DATASETS, TABLE7_RATIOS
from chexagent.instruct.schema import Instance
from chexagent.instruct.store import InstanceStore
from chexagent.instruct.templates import TEMPLATES


def _png(path: Path, value: int) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    arr = np.full((16, 16), value, dtype=np.uint8)
    arr[value % 16, :] = 255 - value  # distinct content per value
    Image.fromarray(arr).save(path)


def write_chexpert(root: Path) -> None:
    rows = []
    for i in range(6):
        labels = dict.fromkeys(CHEXPERT_LABELS, np.nan)
        labels.update(
            {
                "Cardiomegaly": 1.0 if i % 2 else 0.0,
                "Edema": 0.0,
                "Atelectasis": -1.0,
                "Pleural Effusion": 0.0,
                "Consolidation": 0.0,
                "Pneumothorax": 0.0,
            }
        )
        path = f"CheXpert-v1.0-small/train/patient{i:05d}/study1/view1_frontal.jpg"
        rows.append(
            {
                "Path": path,
                "Sex": "Female",
                "Age": 60 + i,
                "Frontal/Lateral": "Lateral" if i == 5 else "Frontal",
                "AP/PA": "" if i == 5 else ("AP" if i % 2 else "PA"),
                **labels,
            }
        )
        _png(root / Path(path).relative_to("CheXpert-v1.0-small"), i)
    valid = []
    for i, row in enumerate(rows[:2]):
        path = f"CheXpert-v1.0-small/valid/patient{64541 + i}/study1/view1_frontal.jpg"
        valid.append({**row, "Path": path})
        _png(root / Path(path).relative_to("CheXpert-v1.0-small"), 100 + i)
    pd.DataFrame(rows).to_csv(root / "train.csv", index=False)
    pd.DataFrame(valid).to_csv(root / "valid.csv", index=False)


def write_mimic(root: Path) -> None:
    labels, meta, split = [], [], []
    for i in range(4):
        subject, study = 10000000 + i, 50000000 + i
        lab = dict.fromkeys(CHEXPERT_LABELS, np.nan)
        lab.update(
            {"Pleural Effusion": float(i % 2), "Cardiomegaly": 0.0, "Edema": 0.0, "Pneumonia": 0.0}
        )
        labels.append({"subject_id": subject, "study_id": study, **lab})
        for j, view in enumerate(("PA", "LATERAL")):
            dicom = f"d{i}{j}"
            meta.append(
                {
                    "dicom_id": dicom,
                    "subject_id": subject,
                    "study_id": study,
                    "PerformedProcedureStepDescription": "CHEST (PA AND LAT)",
                    "ViewPosition": view,
                    "Rows": 16,
                    "Columns": 16,
                }
            )
            split.append(
                {
                    "dicom_id": dicom,
                    "study_id": study,
                    "subject_id": subject,
                    "split": "test" if i == 3 else "train",
                }
            )
            _png(root / "files" / "p10" / f"p{subject}" / f"s{study}" / f"{dicom}.jpg", 20 + i)
        report = root / "files" / "p10" / f"p{subject}" / f"s{study}.txt"
        report.write_text(
            "FINAL REPORT\n INDICATION: cough.\n FINDINGS: Small left effusion.\n"
            " IMPRESSION: Effusion.\n"
        )
    pd.DataFrame(labels).to_csv(root / "mimic-cxr-2.0.0-chexpert.csv", index=False)
    pd.DataFrame(meta).to_csv(root / "mimic-cxr-2.0.0-metadata.csv", index=False)
    pd.DataFrame(split).to_csv(root / "mimic-cxr-2.0.0-split.csv", index=False)


def write_openi(root: Path) -> None:
    root.mkdir(parents=True)
    pd.DataFrame(
        [
            {
                "uid": 1,
                "MeSH": "normal",
                "Problems": "normal",
                "image": "Xray Chest",
                "indication": "pain",
                "comparison": "",
                "findings": "Lungs are clear.",
                "impression": "Normal chest.",
            }
        ]
    ).to_csv(root / "indiana_reports.csv", index=False)
    pd.DataFrame(
        [{"uid": 1, "filename": "1_IM-0001-4001.dcm.png", "projection": "Frontal"}]
    ).to_csv(root / "indiana_projections.csv", index=False)
    _png(root / "images" / "images_normalized" / "1_IM-0001-4001.dcm.png", 40)


def write_rsna(root: Path) -> None:
    root.mkdir(parents=True)
    pd.DataFrame(
        [
            {"patientId": "a1", "x": 10.0, "y": 20.0, "width": 5.0, "height": 5.0, "Target": 1},
            {"patientId": "a1", "x": 40.0, "y": 20.0, "width": 5.0, "height": 5.0, "Target": 1},
            {
                "patientId": "b2",
                "x": np.nan,
                "y": np.nan,
                "width": np.nan,
                "height": np.nan,
                "Target": 0,
            },
        ]
    ).to_csv(root / "stage_2_train_labels.csv", index=False)


def write_siim(root: Path) -> None:
    root.mkdir(parents=True)
    # the Kaggle header has a space before EncodedPixels
    (root / "train-rle.csv").write_text("ImageId, EncodedPixels\n1.2.3, -1\n4.5.6, 2050 3 1020 4\n")


def write_cxr14(root: Path) -> None:
    root.mkdir(parents=True)
    pd.DataFrame(
        [
            {
                "Image Index": "00000001_000.png",
                "Finding Labels": "Cardiomegaly|Effusion",
                "Follow-up #": 0,
                "Patient ID": 1,
                "Patient Age": 58,
                "Patient Gender": "M",
                "View Position": "PA",
            },
            {
                "Image Index": "00000002_000.png",
                "Finding Labels": "No Finding",
                "Follow-up #": 0,
                "Patient ID": 2,
                "Patient Age": 81,
                "Patient Gender": "F",
                "View Position": "AP",
            },
        ]
    ).to_csv(root / "Data_Entry_2017.csv", index=False)
    (root / "test_list.txt").write_text("00000002_000.png\n")


def write_vqa_rad(root: Path) -> None:
    root.mkdir(parents=True)
    rows = [
        {
            "qid": 1,
            "image_name": "synpic1.jpg",
            "image_organ": "CHEST",
            "answer": "Yes",
            "answer_type": "CLOSED",
            "question": "Is there a pneumothorax?",
            "phrase_type": "freeform",
        },
        {
            "qid": 2,
            "image_name": "synpic2.jpg",
            "image_organ": "HEAD",
            "answer": "No",
            "answer_type": "CLOSED",
            "question": "Is there a bleed?",
            "phrase_type": "para",
        },
        {
            "qid": 3,
            "image_name": "synpic1.jpg",
            "image_organ": "CHEST",
            "answer": "right lung",
            "answer_type": "OPEN",
            "question": "Where is the mass?",
            "phrase_type": "test_freeform",
        },
    ]
    (root / "VQA_RAD Dataset Public.json").write_text(json.dumps(rows))


def write_slake(root: Path) -> None:
    root.mkdir(parents=True)
    base = {
        "img_id": 1,
        "img_name": "xmlab1/source.jpg",
        "q_lang": "en",
        "location": "Lung",
        "modality": "X-Ray",
        "base_type": "vqa",
        "content_type": "Abnormality",
    }
    for name in ("train.json", "validate.json", "test.json"):
        rows = [
            {
                **base,
                "qid": 1,
                "question": "Is the lung healthy?",
                "answer": "No",
                "answer_type": "CLOSED",
            },
            {
                **base,
                "qid": 2,
                "question": "What modality is used?",
                "answer": "CT",
                "answer_type": "OPEN",
                "modality": "CT",
            },
        ]
        (root / name).write_text(json.dumps(rows))


WRITERS = {
    "chexpert": write_chexpert,
    "mimic-cxr": write_mimic,
    "openi": write_openi,
    "rsna": write_rsna,
    "siim": write_siim,
    "chestxray14": write_cxr14,
    "vqa-rad": write_vqa_rad,
    "slake": write_slake,
}


@pytest.fixture(scope="module")
def sources(tmp_path_factory) -> dict[str, Path]:
    base = tmp_path_factory.mktemp("datasets")
    out = {}
    for name, writer in WRITERS.items():
        writer(base / name)
        out[name] = base / name
    return out


def test_every_task_format_has_ten_templates():
    assert all(len(t) == 10 for t in TEMPLATES.values())


@pytest.mark.parametrize("name", sorted(WRITERS))
def test_processor_reads_official_layout(sources, name):
    instances = list(PROCESSORS[name](sources[name], 0))
    assert instances, name
    assert instances == list(PROCESSORS[name](sources[name], 0))  # deterministic
    for inst in instances:
        assert inst.question and inst.answer
        assert "<" not in inst.question  # every placeholder filled
        if inst.options is not None:
            assert inst.answer in inst.options


def test_processor_contents(sources):
    chexpert = list(PROCESSORS["chexpert"](sources["chexpert"], 0))
    views = Counter((i.split, i.answer) for i in chexpert if i.task == "ViewClassification")
    assert views == {
        ("train", "PA"): 3,
        ("train", "AP"): 2,
        ("train", "LATERAL"): 1,
        ("val", "PA"): 1,
        ("val", "AP"): 1,
    }
    assert all(Path(i.images[0]).is_file() for i in chexpert)
    # uncertain (-1) atelectasis is never asked as a negative
    assert not any(
        "atelectasis" in i.question.lower()
        for i in chexpert
        if i.template_format == "disease_binary"
    )
    mimic = list(PROCESSORS["mimic-cxr"](sources["mimic-cxr"], 0))
    tasks = Counter(i.task for i in mimic)
    assert tasks["ViewClassification"] == 8
    assert tasks["FindingsGeneration"] == 4 and tasks["FindingsSummarization"] == 4
    gen = next(i for i in mimic if i.task == "FindingsGeneration")
    assert gen.answer == "Small left effusion."
    assert {i.split for i in mimic if i.study_id == "s50000003"} == {"test"}
    rsna = list(PROCESSORS["rsna"](sources["rsna"], 0))
    assert {i.patient_id: i.answer for i in rsna} == {"a1": "yes", "b2": "no"}
    vqa = list(PROCESSORS["vqa-rad"](sources["vqa-rad"], 0))
    assert len(vqa) == 2  # the head CT question is dropped
    assert len(list(PROCESSORS["slake"](sources["slake"], 0))) == 3  # CT rows dropped


def test_siim_rle_bbox():
    assert rle_bbox("-1") is None
    # pixel 2050 = column 2, row 2 (column-major on 1024 rows); run of 3 rows
    assert rle_bbox("2050 3", size=1024) == (2 / 1024, 2 / 1024, 3 / 1024, 5 / 1024)


def test_missing_metadata_names_file(tmp_path):
    with pytest.raises(MetadataError, match="train.csv"):
        list(PROCESSORS["chexpert"](tmp_path, 0))


def _synthetic(pair_sizes: dict[tuple[str, str], int]) -> list[Instance]:
    return [
        Instance(
            instance_id=f"{d}/{t}/{k}",
            task=t,
            dataset=d,
            split="train",
            question="q",
            answer="a",
            template_format="vqa_open",
            template_index=0,
        )
        for (t, d), n in pair_sizes.items()
        for k in range(n)
    ]


def test_mix_matches_table7_ratios():
    sizes = {
        ("NamedEntityRecognition", "RadGraph"): 50,
        ("ImageClassification", "RSNA"): 400,
        ("ViewMatching", "MIMIC-CXR"): 400,
        ("ImageClassification", "CheXpert"): 2000,
        ("ImageClassification", "MIMIC-CXR"): 4000,
        ("Close-EndedVQA", "SLAKE"): 300,
        ("PneumothoraxSegmentation", "SIIM"): 300,
        ("FindingsGeneration", "OpenI"): 300,
        ("Close-EndedVQA", "Rad-Restruct"): 300,
        ("Made-UpTask", "Nowhere"): 100,
    }
    mixture, report = mix(_synthetic(sizes), seed=3)
    counts = Counter(i.pair for i in mixture)
    for (task, dataset), n in sizes.items():
        pair = f"({task}){dataset}"
        expected = 0.0 if dataset in HELD_OUT_DATASETS else TABLE7_RATIOS.get(pair, 0.0)
        assert counts[pair] / n == pytest.approx(expected, abs=0.01), pair
    assert TABLE7_RATIOS["(NamedEntityRecognition)RadGraph"] == 10.0
    assert counts["(NamedEntityRecognition)RadGraph"] == 500
    assert not any(i.dataset in HELD_OUT_DATASETS for i in mixture)
    # an override never resurrects a held-out dataset
    mixture2, _ = mix(
        _synthetic(sizes),
        seed=3,
        overrides={"(Close-EndedVQA)SLAKE": 1.0, "(Made-UpTask)Nowhere": 0.5},
    )
    c2 = Counter(i.pair for i in mixture2)
    assert c2["(Close-EndedVQA)SLAKE"] == 0 and c2["(Made-UpTask)Nowhere"] == 50
    assert [i.instance_id for i in mixture] == [
        i.instance_id for i in mix(_synthetic(sizes), seed=3)[0]
    ]


def _benchmark(tmp_path: Path, image_rel: str) -> Path:
    data = {
        "View Classification": [
            {
                "data_source": "CheXpert",
                "image_path": image_rel,
                "question": "What is the view of this chest X-ray?",
                "option_0": "AP",
                "option_1": "PA",
                "option_2": "LATERAL",
                "answer": 0,
            }
        ]
    }
    path = tmp_path / "bench" / "data.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data))
    return path


def test_leakage_guard_removes_planted_image_by_path_and_content(sources, tmp_path):
    chexpert = sources["chexpert"]
    planted = chexpert / "train" / "patient00003" / "study1" / "view1_frontal.jpg"
    # by path: the benchmark names the very file, relative to --image-root
    bench = _benchmark(tmp_path, "train/patient00003/study1/view1_frontal.jpg")
    from harness.images import ImageResolver

    guard = LeakageGuard.from_benchmarks([bench], ImageResolver(image_root=chexpert))
    instances = list(PROCESSORS["chexpert"](chexpert, 0))
    kept = guard.filter(instances)
    assert {r["matched_by"] for r in guard.removed} == {"path"}
    assert all(str(planted) not in i.images for i in kept)
    assert len(kept) + len(guard.removed) == len(instances) and guard.removed
    # by content: a copy of the image under another name in the benchmark's own folder
    copy = tmp_path / "bench" / "renamed.jpg"
    copy.write_bytes(planted.read_bytes())
    guard2 = LeakageGuard.from_benchmarks([_benchmark(tmp_path, "renamed.jpg")])
    guard2.filter(instances)
    assert guard2.removed and {r["matched_by"] for r in guard2.removed} == {"content"}


def test_build_writes_store_mix_and_report(sources, tmp_path):
    bench = _benchmark(
        tmp_path,
        str(sources["chexpert"] / "train" / "patient00001" / "study1" / "view1_frontal.jpg"),
    )
    out = tmp_path / "chexinstruct"
    summary = build(out, dict(sources), seed=0, benchmarks=[bench], shard_size=7)
    store = InstanceStore(out / "instances")
    everything = list(store)
    assert len(everything) == summary["instances"] == len(store)
    assert len(store.index["shards"]) > 1
    assert summary["leakage_removed"] >= 1
    train = list(InstanceStore(out / "stage3-train"))
    assert train and not any(i.dataset in HELD_OUT_DATASETS for i in train)
    assert all(i.split == "train" for i in train)
    held = {i.dataset for i in everything} & HELD_OUT_DATASETS
    assert held == HELD_OUT_DATASETS  # present for evaluation, absent from training
    report = (out / "report.md").read_text()
    assert "(ImageClassification)CheXpert" in report and "Leakage guard: " in report
    stats = json.loads((out / "report.json").read_text())["statistics"]
    assert stats["(FindingsGeneration)OpenI"]["instances_test"] == 1
    assert stats["(ViewClassification)MIMIC-CXR"]["images_train"] == 6


def test_store_reports_torn_shard(tmp_path):
    from chexagent.instruct.store import write_store

    write_store(tmp_path, _synthetic({("T", "D"): 3}), shard_size=2)
    shard = tmp_path / "shard-00000.jsonl"
    shard.write_text(shard.read_text().splitlines()[0] + "\n")
    with pytest.raises(ValueError, match="shard-00000.jsonl: 1 instances, index says 2"):
        list(InstanceStore(tmp_path))
