"""Reader study: blinding, privacy, determinism, REDCap kit, round trip and agreement.

Runs are small synthetic run folders (tests/support/helpers/reader_study.py: a results.json that passes
the schema and a samples.jsonl) over a phantom data.json with real PNG radiographs: the same
files `chexbench run` writes, made without running a model so the suite stays fast. The runs
are synthetic, so every export passes force=True (which also accepts demo runs).
"""

from __future__ import annotations

import csv
import io
import json
import random
from pathlib import Path

import numpy as np
import pytest
from helpers.reader_study import MODEL_NAME, TASK
from helpers.reader_study import write_run as _write_run

from harness.cli import main
from harness.errors import UserError
from harness.phantom import generate_phantom
from harness.reader_study.agreement import kendall_metric, ordinal_alpha
from harness.reader_study.analysis import two_way_replicates
from harness.reader_study.design import ATTRIBUTES, SCALE
from harness.reader_study.export import ExportConfig, build_export, write_export
from harness.reader_study.ratings import load_key, read_ratings
from harness.reader_study.redcap import DICTIONARY_COLUMNS, FIELD_TYPES
from harness.reader_study.report import build_results
from harness.reader_study.scrub import scrub
from harness.reader_study.selection import assign_sides
from harness.results_schema import validate_results


@pytest.fixture(scope="module")
def study(tmp_path_factory):
    root = tmp_path_factory.mktemp("reader_study")
    phantom = generate_phantom(root / "phantom", n_per_pair=1, seed=0, n_text=24, n_fairness=10)
    data_path = phantom.data_json
    run = _write_run(root / "run", data_path)
    out = root / "export"
    key = write_export(
        ExportConfig(runs=[str(run)], task=TASK, n=21, readers=2, seed=11, out=out, force=True)
    )
    return {"root": root, "data": data_path, "run": run, "out": out, "key": key}


def _packet_files(out: Path) -> list[Path]:
    return [p for p in sorted(out.rglob("*")) if p.is_file() and "key" not in p.parts]


# ---------------------------------------------------------------- blinding and privacy


def test_no_packet_file_holds_the_side_mapping_or_a_model_name(study):
    key = study["key"]
    forbidden = [
        MODEL_NAME.casefold(),
        "acmecxr",
        "physician",
        "x_side",
        "reference",
        "findings_generation/",
        "data/mimic-cxr",
        str(study["run"]).casefold(),
    ]
    forbidden += [Path(raw).stem.casefold() for it in key["items"] for raw in it["images"].values()]
    forbidden += [it["cluster_id"].casefold() for it in key["items"]]
    files = _packet_files(study["out"])
    assert any(p.suffix == ".html" for p in files) and any(p.suffix == ".csv" for p in files)
    for p in files:
        if p.suffix == ".png":
            continue
        text = p.read_text(encoding="utf-8").casefold()
        for word in forbidden:
            assert word not in text, f"{p} contains {word!r}"
    # The packet CSV shows sides only as A/B columns: nothing in a row says which is which.
    rows = list(csv.DictReader(open(study["out"] / "packets" / "R1.csv", encoding="utf-8")))
    assert {r["item_id"] for r in rows} == {it["opaque_id"] for it in key["items"]}
    assert set(key["x"]) >= {"name"} and key["x"]["name"] == MODEL_NAME


def test_thumbnails_are_embedded_and_images_renamed(study):
    html = (study["out"] / "packets" / "R1.html").read_text(encoding="utf-8")
    assert (
        html.count("data:image/png;base64,")
        == sum(len(it["images"]) for it in study["key"]["items"])
        > 0
    )
    pngs = sorted((study["out"] / "redcap" / "images").glob("*.png"))
    assert pngs and all(p.stem.startswith("fg") for p in pngs)


def test_scrubber_removes_planted_cues():
    report = (
        "FINDINGS:\n1. Compared to the prior study, the heart size is normal.\n"
        "2) No pleural effusion, as compared with the previous radiograph.\n"
        "3. Lungs are clear (compared to prior).\n\n"
        "IMPRESSION: No acute process.\n\nElectronically signed by: Dr. John Smith"
    )
    res = scrub(report)
    low = res.text.lower()
    for cue in (
        "findings:",
        "impression:",
        "1.",
        "2)",
        "3.",
        "compared",
        "prior",
        "previous",
        "signed",
        "smith",
    ):
        assert cue not in low, (cue, res.text)
    assert res.text == (
        "The heart size is normal. No pleural effusion. Lungs are clear. No acute process."
    )
    rules = {c["rule"] for c in res.changes}
    assert rules >= {"section_header", "list_numbering", "prior_comparison", "signature"}
    # A reference that cannot be cut cleanly is flagged and left as written.
    flagged = scrub("Interval increase in the right pleural effusion.")
    assert flagged.text == "Interval increase in the right pleural effusion."
    assert flagged.flags and flagged.flags[0]["rule"] == "prior_reference"
    # Case and whitespace style are normalised the same way for every author.
    assert (
        scrub("no   pneumothorax.\nPICC line   tip in the svc").text
        == "No pneumothorax. PICC line tip in the SVC."
    )


def test_planted_cues_in_model_text_never_reach_packets(study):
    text = "\n".join(
        p.read_text(encoding="utf-8") for p in _packet_files(study["out"]) if p.suffix == ".csv"
    )
    assert "FINDINGS:" not in text and "Electronically" not in text and "Roe" not in text
    log = json.loads((study["out"] / "key" / "scrub_log.json").read_text())
    assert any(c["rule"] == "signature" for it in log["items"] for c in it["x"]["changes"])


@pytest.mark.parametrize(
    "planted",
    [
        "MRN 1234567",
        "patient p10000032 seen",
        "DOB: 01/02/1950",
        "accession # 99887766",
        "patient64741",
    ],
)
def test_planted_identifier_makes_export_refuse(study, tmp_path, planted):
    run = _write_run(tmp_path / "run", study["data"], plant={3: f" {planted}."})
    out = tmp_path / "out"
    with pytest.raises(UserError, match="patient identifier"):
        write_export(
            ExportConfig(runs=[str(run)], task=TASK, n=24, readers=2, seed=1, out=out, force=True)
        )
    assert not out.exists(), "a refused export must not write anything"


# ---------------------------------------------------------------- determinism and balance


def test_same_seed_gives_byte_identical_packets(study, tmp_path):
    again = write_export(
        ExportConfig(
            runs=[str(study["run"])],
            task=TASK,
            n=21,
            readers=2,
            seed=11,
            out=tmp_path / "again",
            force=True,
        )
    )
    assert again["study_id"] == study["key"]["study_id"]
    first = {
        p.relative_to(study["out"]): p.read_bytes() for p in study["out"].rglob("*") if p.is_file()
    }
    second = {
        p.relative_to(tmp_path / "again"): p.read_bytes()
        for p in (tmp_path / "again").rglob("*")
        if p.is_file()
    }
    assert first == second
    other = build_export(
        ExportConfig(
            runs=[str(study["run"])],
            task=TASK,
            n=21,
            readers=2,
            seed=12,
            out=tmp_path / "unused",
            force=True,
        )
    )
    assert other["packets/R1.csv"] != first[Path("packets/R1.csv")]


def test_sides_are_balanced_within_one(study):
    sides = [it["x_side"] for it in study["key"]["items"]]
    assert len(sides) == 21 and abs(sides.count("A") - sides.count("B")) <= 1
    for n in range(2, 40):
        ids = [f"findings_generation/{i}" for i in range(n)]
        got = list(assign_sides(ids, seed=n).values())
        assert abs(got.count("A") - got.count("B")) <= 1
    # Deterministic from (seed, item): the order items arrive in does not matter.
    ids = [f"x/{i}" for i in range(15)]
    assert assign_sides(ids, 3) == assign_sides(list(reversed(ids)), 3)


# ---------------------------------------------------------------- REDCap


def test_redcap_dictionary_and_template(study):
    folder = study["out"] / "redcap"
    with open(folder / "data_dictionary.csv", newline="", encoding="utf-8") as f:
        rows = list(csv.reader(f))
    assert tuple(rows[0]) == DICTIONARY_COLUMNS
    assert rows[0][:5] == [
        "Variable / Field Name",
        "Form Name",
        "Section Header",
        "Field Type",
        "Field Label",
    ]
    assert rows[0][-1] == "Field Annotation" and len(rows[0]) == 18
    body = rows[1:]
    assert body[0][0] == "record_id"
    assert all(len(r) == len(DICTIONARY_COLUMNS) for r in body)
    assert all(r[3] in FIELD_TYPES for r in body)
    names = [r[0] for r in body]
    assert len(names) == len(set(names))
    assert all(n[0].isalpha() and n == n.lower() and len(n) <= 26 for n in names)
    radios = [r for r in body if r[3] == "radio"]
    assert len(radios) == 21 * len(ATTRIBUTES)
    for r in radios:
        parts = [p.strip() for p in r[5].split("|")]
        assert [p.split(", ", 1) for p in parts] == [[str(c), SCALE[c]] for c in SCALE]
    with open(folder / "import_template.csv", newline="", encoding="utf-8") as f:
        template = list(csv.reader(f))
    data_fields = [r[0] for r in body if r[3] != "descriptive"]
    forms = sorted({r[1] for r in body})
    assert template[0] == data_fields + [f"{f}_complete" for f in forms]
    assert [row[0] for row in template[1:]] == ["R1", "R2"]


# ---------------------------------------------------------------- round trip


def _fill(study, tmp_path: Path, prefers: dict[str, str], seed: int = 5) -> list[Path]:
    """Synthetic readers: each prefers X on the attributes given, random on the rest."""
    key = study["key"]
    side = {it["opaque_id"]: it["x_side"] for it in key["items"]}
    rng = random.Random(seed)
    paths = []
    for reader in key["readers"]:
        rows = list(
            csv.DictReader(open(study["out"] / "packets" / f"{reader}.csv", encoding="utf-8"))
        )
        for row in rows:
            for attr in ATTRIBUTES:
                if prefers.get(reader) == attr:
                    a_codes = [1, 2] if side[row["item_id"]] == "A" else [4, 5]
                    row[attr] = str(rng.choice(a_codes))
                else:
                    row[attr] = str(rng.randint(1, 5))
        path = tmp_path / f"{reader}_filled.csv"
        with open(path, "w", newline="", encoding="utf-8") as f:
            writer = csv.DictWriter(f, fieldnames=list(rows[0]))
            writer.writeheader()
            writer.writerows(rows)
        paths.append(path)
    return paths


def test_round_trip_recovers_the_planted_preference(study, tmp_path):
    paths = _fill(study, tmp_path, {"R1": "completeness"})
    key_path = study["out"] / "key" / "key.json"
    out = tmp_path / "analysis"
    assert (
        main(
            [
                "reader-study",
                "analyze",
                "--key",
                str(key_path),
                "--ratings",
                *map(str, paths),
                "--output",
                str(out),
                "--bootstrap-samples",
                "400",
            ]
        )
        == 0
    )
    res = json.loads((out / "reader_study.json").read_text())
    assert validate_results(res) == []
    assert res["kind"] == "reader_study" and res["model"]["name"] == MODEL_NAME
    task = res["reader_study"]["tasks"][TASK]
    pref = task["by_reader"]["R1"]["completeness"]
    assert pref["value"] > 5 and pref["ci"][0] > 0
    rand = task["by_reader"]["R2"]["completeness"]
    assert abs(rand["value"]) < 3 and rand["ci"][0] < 0 < rand["ci"][1]
    both = task["attributes"]["completeness"]
    assert both["value"] > 0 and both["ci_method"].startswith("percentile-bootstrap/two-way")
    assert "rougeL" in task["metric_correlation"]
    assert (out / "reader_study.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_redcap_export_reads_back_like_the_packets(study, tmp_path):
    paths = _fill(study, tmp_path, {"R1": "completeness"})
    keys = [load_key(study["out"] / "key" / "key.json")]
    from_csv = read_ratings(paths, keys)
    template = list(csv.reader(open(study["out"] / "redcap" / "import_template.csv")))
    header = template[0]
    answers = {(r.reader, f"{r.opaque_id}_{r.attribute}"): str(r.code) for r in from_csv}
    export = tmp_path / "redcap_export.csv"
    with open(export, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(header)
        for row in template[1:]:
            reader = row[0]
            w.writerow(
                [
                    answers.get((reader, c), v)
                    if c.endswith(ATTRIBUTES)
                    else ("2" if c.endswith("_complete") else v)
                    for c, v in zip(header, row, strict=True)
                ]
            )
    from_redcap = read_ratings([export], keys)
    ident = sorted((r.reader, r.opaque_id, r.attribute, r.code) for r in from_csv)
    assert sorted((r.reader, r.opaque_id, r.attribute, r.code) for r in from_redcap) == ident


def test_validation_errors_name_file_and_row(study, tmp_path, capsys):
    paths = _fill(study, tmp_path, {})
    rows = list(csv.DictReader(open(paths[0], encoding="utf-8")))
    rows[0]["item_id"] = "fg99"  # unknown item (row 2)
    rows[1]["correctness"] = ""  # missing answer (row 3)
    rows[2]["conciseness"] = "7"  # out of range (row 4)
    with open(paths[0], "w", newline="", encoding="utf-8") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    keys = [load_key(study["out"] / "key" / "key.json")]
    with pytest.raises(UserError) as err:
        read_ratings(paths, keys)
    msg = str(err.value)
    assert f"{paths[0]} row 2: unknown item 'fg99'" in msg
    assert f"{paths[0]} row 3: item {rows[1]['item_id']}: missing answer for correctness" in msg
    assert f"{paths[0]} row 4: item {rows[2]['item_id']}: conciseness = '7' is out of range" in msg
    assert "no answers for items" in msg  # the row replaced by fg99 is now missing
    code = main(
        [
            "reader-study",
            "analyze",
            "--key",
            str(study["out"] / "key" / "key.json"),
            "--ratings",
            *map(str, paths),
            "--output",
            str(tmp_path / "x"),
        ]
    )
    assert code == 2 and "row 4" in capsys.readouterr().err
    assert not (tmp_path / "x").exists()


# ---------------------------------------------------------------- statistics


def test_krippendorff_alpha_matches_hand_computation():
    # Two readers, four items, scores on the -10..10 scale.
    # Pairable values: n_-5 = 2, n_0 = 2, n_5 = 1, n_10 = 3 (n = 8).
    # Observed: only item 2 disagrees (5 vs 10), contributing o_(5,10) = o_(10,5) = 1;
    #   ordinal delta(5,10) = (n_5 + n_10) - (n_5 + n_10)/2 = 2, squared 4 -> D_o = 2*4/8 = 1.
    # Expected: sum over c<k of n_c n_k delta^2, with
    #   delta(-5,0)=2, delta(-5,5)=3.5, delta(-5,10)=5.5, delta(0,5)=1.5, delta(0,10)=3.5,
    #   delta(5,10)=2 -> 16 + 24.5 + 181.5 + 4.5 + 73.5 + 12 = 312; both orders: 624;
    #   D_e = 624 / (8 * 7).  alpha = 1 - D_o / D_e = 1 - 56/624.
    matrix = np.array([[10, 5, 0, -5], [10, 10, 0, -5]], dtype=float)
    assert ordinal_alpha(matrix) == pytest.approx(1 - 56 / 624, abs=1e-9)
    assert np.isnan(ordinal_alpha(np.zeros((2, 4))))  # no variation: undefined, not 1


def test_two_way_bootstrap_resamples_readers_as_well_as_items():
    # Every item scored the same by a reader, readers differ: an item-only bootstrap would
    # see no uncertainty at all; resampling readers must.
    matrix = np.tile(np.array([-10.0, 0.0, 10.0]), (12, 1))
    reps = two_way_replicates(matrix, None, B=500, seed=1)
    assert reps.std() > 1 and reps.min() < 0 < reps.max()
    assert np.allclose(two_way_replicates(np.full((12, 3), 5.0), None, 50, 1), 5.0)
    # Clusters: two items of one patient always travel together.
    clustered = two_way_replicates(
        np.array([[10.0], [10.0], [-10.0]]), ["p1", "p1", "p2"], B=200, seed=2
    )
    # p1 twice -> 10, p2 twice -> -10, one of each -> (10 + 10 - 10) / 3; never (10 - 10) / 2.
    assert set(np.round(clustered, 6)) == {10.0, -10.0, round(10 / 3, 6)}


def test_kendall_tau_with_ci():
    x = np.arange(20, dtype=float)
    up = kendall_metric(x, x * 2 + 1, B=200, seed=0)
    assert up.value == pytest.approx(1.0) and up.ci[0] > 0.9
    down = kendall_metric(x, -x, B=200, seed=0)
    assert down.value == pytest.approx(-1.0)
    flat = kendall_metric(x, np.zeros(20), B=50, seed=0)
    assert flat.value is None and flat.unavailable


def test_build_results_refuses_two_keys_for_one_task(study):
    key = load_key(study["out"] / "key" / "key.json")
    other = {
        **key,
        "study_id": "rsother",
        "items": [{**it, "opaque_id": "zz" + it["opaque_id"]} for it in key["items"]],
    }
    with pytest.raises(UserError, match="same task"):
        build_results([key, other], [], 10, 0, [])


# ---------------------------------------------------------------- spreadsheet formulas


def test_csv_cells_that_a_spreadsheet_would_run_are_text_and_still_read_back(tmp_path):
    """Before: a report starting with "=" (or + - @ tab CR) was a live formula when a
    radiologist opened the packet or the REDCap dictionary in Excel."""
    from harness.reader_study.packets import BlindItem, packet_csv, to_csv
    from harness.reader_study.redcap import dictionary_csv

    hostile = ['=HYPERLINK("https://evil.example","x")', "+1+2", "-2+3", "@SUM(A1)"]
    items = [
        BlindItem("ab1", hostile[0], hostile[1], hostile[2], ()),
        BlindItem("ab2", hostile[3], "Lungs: 1-2 cm nodule", "a=b", ()),
    ]
    text = packet_csv("rs1", "R1", items)
    rows = list(csv.DictReader(io.StringIO(text)))
    cells = [r[c] for r in rows for c in ("input", "report_a", "report_b")]
    assert cells[:4] == ["'" + h for h in hostile]
    assert cells[4:] == ["Lungs: 1-2 cm nodule", "a=b"]  # a sign inside the text is no formula
    # Tab and CR (the exports normalise whitespace, so only defence in depth).
    out = to_csv([["\tx", "\ry", "z"]])
    assert out.startswith("'\tx,'\ry,") and out.endswith(",z\n")

    # A filled packet still reads back: the ids and answers analyze reads are untouched.
    for row in rows:
        row.update(dict.fromkeys(ATTRIBUTES, "4"), comment="fine")
    filled = tmp_path / "R1.csv"
    with open(filled, "w", newline="", encoding="utf-8") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    key = {
        "study_id": "rs1",
        "readers": ["R1"],
        "items": [{"opaque_id": it.opaque_id} for it in items],
    }
    ratings = read_ratings([filled], [key])
    assert sorted((r.opaque_id, r.attribute, r.code, r.comment) for r in ratings) == sorted(
        (it.opaque_id, a, 4, "fine") for it in items for a in ATTRIBUTES
    )

    # The REDCap dictionary: labels are HTML (never a formula); action tags stay as written.
    dictionary = list(csv.reader(io.StringIO(dictionary_csv("rs1", TASK, items))))
    annotations = [r[-1] for r in dictionary[1:] if r[-1]]
    assert '@DEFAULT="rs1" @READONLY' in annotations
    assert not any(c.startswith(("=", "+", "-", "\t", "\r")) for r in dictionary for c in r)


def test_scores_csv_keeps_a_readers_formula_comment_inert(study, tmp_path):
    """scores.csv carries readers' free-text comments; opened in a spreadsheet, one that starts
    with "=" must be text, as in the packets (OWASP CSV injection)."""
    paths = _fill(study, tmp_path, {})
    path = paths[0]
    rows = list(csv.DictReader(open(path, encoding="utf-8")))
    rows[0]["comment"] = '=HYPERLINK("http://example.invalid","x")'
    with open(path, "w", newline="", encoding="utf-8") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    out = tmp_path / "analysis"
    key = study["out"] / "key" / "key.json"
    argv = ["reader-study", "analyze", "--key", str(key), "--ratings", *map(str, paths)]
    assert main([*argv, "--output", str(out), "--bootstrap-samples", "50"]) == 0
    cells = [c for row in csv.reader(open(out / "scores.csv", encoding="utf-8")) for c in row]
    assert "'" + rows[0]["comment"] in cells
    assert not [c for c in cells if c.startswith(("=", "+", "@"))]
