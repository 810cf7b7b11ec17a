"""Trust at the edges of `reader-study export` (issue 16): privacy and blinding, each failure
measured on the exporter before the fix, as a test.

- identifiers in the forms the issue lists (month-name dates, phone numbers, e-mail, spaced
  SSNs, labelled and titled names, addresses, ages over 89, full-width and zero-width MRNs)
  reached the packets; now every form in tests/support/helpers/phi_corpus.py is found and the export
  refuses, writing nothing, while radiology text (T8-T10, Kerley B, measurements) passes;
- the detector's first pass is presidio, which must not touch the network or the home folder;
- the scrub log copied every original text, identifiers in cut signatures included;
- the unblinding scan searched the base64 thumbnails and matched short display names inside
  ordinary words, so it refused by chance;
- a synthetic or random-weight run exported without a word.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from helpers.phi_corpus import (
    EXTRA,
    GAP,
    HELDOUT,
    ISSUE,
    KNOWN_FALSE_ALARMS,
    NEGATIVE,
    NEGATIVE_HELDOUT,
    Case,
)
from helpers.reader_study import TASK, write_run

from harness.errors import UserError
from harness.phantom import generate_phantom
from harness.reader_study.export import ExportConfig, build_export, write_export
from harness.reader_study.privacy import find_identifiers, normalise
from harness.reader_study.scrub import scrub

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def phantom(tmp_path_factory):
    root = tmp_path_factory.mktemp("reader_privacy")
    data = generate_phantom(root / "phantom", n_per_pair=1, seed=0, n_text=12, n_fairness=10)
    return data.data_json


def _export(run: Path, out: Path, **kw) -> dict[str, bytes]:
    cfg = {"runs": [str(run)], "task": TASK, "n": 12, "readers": 2, "seed": 3, "out": out}
    return build_export(ExportConfig(**(cfg | kw)))


def _alnum(text: str, start: int, end: int) -> set[int]:
    return {i for i in range(start, end) if text[i].isalnum()}


def _case_id(case: Case) -> str:
    return f"{case.form}:{case.text[:28]}"


# ---------------------------------------------------------------- the detector


@pytest.mark.parametrize("case", ISSUE + EXTRA + HELDOUT, ids=_case_id)
def test_every_identifier_form_is_found_and_covered(case):
    text = normalise(case.text)
    hits = find_identifiers(case.text)
    assert hits, f"nothing found in {case.text!r}"
    covered = set().union(*(_alnum(text, h.start, h.end) for h in hits))
    for phi in case.phi:
        start = text.index(phi)
        assert _alnum(text, start, start + len(phi)) <= covered, (phi, hits)


@pytest.mark.parametrize("case", ISSUE, ids=_case_id)
def test_identifiers_survive_the_scrubber_into_the_gate(case):
    """The gate sees the scrubbed text (sentence case, headers cut): every form is still found."""
    res = scrub(normalise("No pleural effusion. " + case.text))
    assert find_identifiers(res.text) or find_identifiers(res.as_written), res.text


@pytest.mark.parametrize("case", NEGATIVE + NEGATIVE_HELDOUT, ids=_case_id)
def test_radiology_text_is_not_flagged(case):
    assert find_identifiers(case.text) == []
    res = scrub(case.text)
    assert find_identifiers(res.text) == [] and find_identifiers(res.as_written) == []


def test_gaps_and_false_alarms_are_what_the_docs_say():
    """Bare names and hospital names need NER, which nothing offline provides; a capitalised
    pair after "Patient:" is refused even when it is radiology (both documented)."""
    assert all(find_identifiers(c.text) == [] for c in GAP)
    assert all(find_identifiers(c.text) for c in KNOWN_FALSE_ALARMS)


def test_normalisation_folds_width_and_removes_invisible_characters():
    assert normalise("\uff2d\uff32\uff2e\u00a0\uff11\uff12") == "MRN 12"
    assert normalise("12\u200b34\u200c56\u200d78\u2060\ufeff9\u00ad0\u034f1") == "12345678901"
    sample = "Ｔ８\u200b-T10 ﬁndings"
    assert normalise(normalise(sample)) == normalise(sample) == "T8-T10 findings"


def test_presidio_is_the_first_pass():
    """Phone numbers, e-mail and URLs come from presidio, not from the project's rules."""
    hits = find_identifiers("Call (617) 555-0123 or see https://pacs.example.org/case/1.")
    assert {h.kind for h in hits if h.source == "presidio"} >= {"phone_number", "url"}


def test_detector_is_offline_and_writes_nothing_to_home(tmp_path):
    """A fresh process with sockets blocked and an empty home: presidio's e-mail check
    (tldextract) must use its bundled suffix list, not fetch one or cache it under ~."""
    script = r"""
import json, socket
attempts = []
def refuse(*args, **kwargs):
    attempts.append(repr(args[:1]))
    raise OSError("network blocked by the test")
socket.getaddrinfo = refuse
socket.create_connection = refuse
_connect = socket.socket.connect
def connect(self, address):
    if isinstance(address, (str, bytes)):
        return _connect(self, address)
    refuse(address)
socket.socket.connect = connect
from harness.reader_study.privacy import find_identifiers
hits = find_identifiers("Copied to jsmith@mgh.harvard.edu; call (617) 555-0123.")
print(json.dumps({"hits": sorted({f"{h.source}:{h.kind}" for h in hits}), "attempts": attempts}))
"""
    home, cache = tmp_path / "home", tmp_path / "cache"
    home.mkdir()
    cache.mkdir()
    env = {k: v for k, v in os.environ.items() if not k.startswith("TLDEXTRACT")}
    env.update(HOME=str(home), XDG_CACHE_HOME=str(cache), HF_HOME=str(tmp_path / "hf"))
    proc = subprocess.run(
        [sys.executable, "-c", script],
        cwd=REPO,
        env=env,
        text=True,
        capture_output=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    assert out["attempts"] == []
    assert "presidio:email_address" in out["hits"] and "presidio:phone_number" in out["hits"]
    assert list(home.rglob("*")) == [] and list(cache.rglob("*")) == []


# ---------------------------------------------------------------- the export gate

ONE_PER_FORM = list({c.form: c for c in reversed(ISSUE)}.values())


@pytest.mark.parametrize("case", ONE_PER_FORM, ids=_case_id)
def test_export_refuses_every_issue_form_and_writes_nothing(phantom, tmp_path, case):
    run = write_run(tmp_path / "run", phantom, plant={2: " " + case.text})
    out = tmp_path / "out"
    with pytest.raises(UserError, match="patient identifier") as err:
        write_export(
            ExportConfig(runs=[str(run)], task=TASK, n=12, readers=2, seed=3, out=out, force=True)
        )
    assert not out.exists(), "a refused export must not write anything"
    for phi in case.phi:  # the message names kind and place, never the identifier itself
        assert normalise(phi) not in str(err.value)


def test_identifiers_in_cut_text_never_reach_packets_or_the_scrub_log(phantom, tmp_path):
    """A signature with a name, phone and e-mail is cut by the scrubber: the export goes ahead,
    and neither the packets nor key/scrub_log.json hold any of it."""
    planted = {
        3: " Compared with the prior study of January 2, 2019, no change.",
        1: "\n\nElectronically signed by Dr Smith, (617) 555-0123, jsmith@mgh.harvard.edu",
        2: " (compared to prior exam at 77 Beacon St)",
    }
    run = write_run(tmp_path / "run", phantom, plant=planted)
    out = tmp_path / "out"
    write_export(
        ExportConfig(runs=[str(run)], task=TASK, n=12, readers=2, seed=3, out=out, force=True)
    )
    secrets = ["january 2", "smith", "555-0123", "jsmith", "beacon", "mgh.harvard"]
    for path in out.rglob("*"):
        if path.is_file() and path.suffix != ".png":
            text = path.read_text(encoding="utf-8").casefold()
            leaked = [s for s in secrets if s in text]
            assert not leaked, f"{path.relative_to(out)} holds {leaked}"
    log = json.loads((out / "key" / "scrub_log.json").read_text(encoding="utf-8"))
    x_sides = [it["x"] for it in log["items"]]
    rules = {c["rule"] for side in x_sides for c in side["changes"]}
    assert {"signature", "prior_comparison"} <= rules
    kinds = {h["kind"] for side in x_sides for h in side["identifiers_cut"]}
    assert {"titled_name", "phone_number", "email_address"} <= kinds
    for side in x_sides:
        for h in side["identifiers_cut"]:
            assert set(h) == {"kind", "start", "end"} and h["end"] > h["start"]


# ---------------------------------------------------------------- the unblinding scan


def test_unblinding_scan_reads_text_not_images(phantom, tmp_path):
    """A display name that happens to occur in the base64 of a thumbnail is no leak."""
    first = _export(write_run(tmp_path / "a", phantom), tmp_path / "o1", force=True)
    html = first["packets/R1.html"].decode()
    payload = " ".join(re.findall(r"base64,([A-Za-z0-9+/=]+)", html))
    text = re.sub(r"base64,[A-Za-z0-9+/=]+", "", html).casefold()
    name = next(w for w in re.findall(r"[A-Za-z]{8}", payload) if w.casefold() not in text)
    files = _export(write_run(tmp_path / "b", phantom, name=name), tmp_path / "o2", force=True)
    assert name in files["packets/R1.html"].decode()  # still embedded, still not a leak


@pytest.mark.parametrize("name", ["Medi", "Card", "Pneumo"])
def test_short_display_names_match_whole_words_only(phantom, tmp_path, name):
    """ "Medi" is inside "mediastinal", "Pneumo" inside "pneumothorax": not the model's name."""
    run = write_run(tmp_path / "run", phantom, name=name)
    files = _export(run, tmp_path / "out", force=True)
    assert re.search(name.casefold(), files["packets/R1.csv"].decode().casefold())


def test_a_system_name_in_a_text_still_refuses(phantom, tmp_path):
    run = write_run(tmp_path / "run", phantom, plant={1: " Report generated by AcmeCXR-7B."})
    with pytest.raises(UserError, match="unblinds the study"):
        _export(run, tmp_path / "out", force=True)


# ---------------------------------------------------------------- demo runs


@pytest.mark.parametrize(
    "flags, word",
    [({"synthetic": True}, "synthetic"), ({"synthetic": False, "smoke": True}, "random-weight")],
)
def test_demo_runs_are_refused_unless_forced(phantom, tmp_path, flags, word):
    run = write_run(tmp_path / "run", phantom, **flags)
    out = tmp_path / "out"
    with pytest.raises(UserError, match=word):
        write_export(ExportConfig(runs=[str(run)], task=TASK, n=12, readers=2, seed=3, out=out))
    assert not out.exists()
    write_export(
        ExportConfig(runs=[str(run)], task=TASK, n=12, readers=2, seed=3, out=out, force=True)
    )
    html = (out / "packets" / "R1.html").read_text(encoding="utf-8")
    assert re.search(r"id=['\"]demo-warning['\"]", html) and word in html
    dictionary = (out / "redcap" / "data_dictionary.csv").read_text(encoding="utf-8")
    assert "demo_warning" in dictionary and word in dictionary
    key = json.loads((out / "key" / "key.json").read_text(encoding="utf-8"))
    assert key["demo_warning"] and word in key["demo_warning"]


def test_a_real_run_exports_without_force_or_banner(phantom, tmp_path):
    run = write_run(tmp_path / "run", phantom, synthetic=False)
    files = _export(run, tmp_path / "out")
    assert "demo-warning" not in files["packets/R1.html"].decode()
    assert "demo_warning" not in files["redcap/data_dictionary.csv"].decode()
    assert json.loads(files["key/key.json"])["demo_warning"] is None
