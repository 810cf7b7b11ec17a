"""Recall and false alarms of the reader-study identifier gate, per identifier form.

Runs the corpus of tests/support/helpers/phi_corpus.py through four detectors and prints the table
quoted in docs/reader-study.md:

- presidio: presidio-analyzer alone (pattern recognizers, `no_op` engine, score >= 0.4);
- rules: this project's radiology rules alone (harness.reader_study.privacy.RULES);
- both: what `find_identifiers` returns (the two pooled);
- export: what the export does with a text (scrub, then the gate on the text as shown and
  as written): the identifier is kept out of the packets when the export refuses or the
  scrubber cut it.

A case is "found" when anything in it is flagged, "covered" when every letter and digit of
each identifier lies inside a flagged span (what the scrub log's positions rely on). All text
is normalised first (NFKC, invisible characters removed), as the export does. Run:
`.venv/bin/python bench/bench_reader_study_phi.py`.
"""

from __future__ import annotations

import sys
import time
from collections import defaultdict
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests" / "support"))
from helpers.phi_corpus import CORPUS  # noqa: E402  (the tests' corpus)

from harness.reader_study.privacy import (  # noqa: E402
    IdentifierHit,
    find_identifiers,
    normalise,
    presidio_hits,
    rule_hits,
)
from harness.reader_study.scrub import scrub  # noqa: E402

Detector = Callable[[str], list[IdentifierHit]]


def _export_gate(text: str) -> list[IdentifierHit]:
    res = scrub(text)
    return find_identifiers(res.text) + find_identifiers(res.as_written)


def _kept_out(text: str, phi: tuple[str, ...]) -> bool:
    """The export refuses the text, or the scrubber cut every identifier out of it."""
    if _export_gate(text):
        return True
    shown = "".join(ch for ch in scrub(text).text.casefold() if ch.isalnum())
    return not any("".join(ch for ch in p.casefold() if ch.isalnum()) in shown for p in phi)


DETECTORS: dict[str, Detector] = {
    "presidio": presidio_hits,
    "rules": rule_hits,
    "both": find_identifiers,
    "export": _export_gate,
}


def _covered(text: str, hits: list[IdentifierHit], phi: tuple[str, ...]) -> bool:
    flagged = {i for h in hits for i in range(h.start, h.end) if text[i].isalnum()}
    for part in phi:
        start = text.index(part)
        if not {i for i in range(start, start + len(part)) if text[i].isalnum()} <= flagged:
            return False
    return True


def main() -> None:
    find_identifiers("warm-up: 617-555-0123, a@example.org")  # builds presidio once
    names = list(DETECTORS)
    found: dict[tuple[str, str], int] = defaultdict(int)
    covered: dict[tuple[str, str], int] = defaultdict(int)
    n: dict[str, int] = defaultdict(int)
    set_of: dict[str, str] = {}
    alarms: dict[tuple[str, str], list[str]] = defaultdict(list)  # (set, detector) -> texts
    misses: list[str] = []
    seconds: dict[str, float] = defaultdict(float)
    for case in CORPUS:
        text = normalise(case.text)
        # Held-out positives are reported case by case; the rest per form.
        form = case.text if case.set == "heldout" else case.form
        set_of[form] = case.set
        n[form] += 1
        for name, detect in DETECTORS.items():
            t0 = time.perf_counter()
            hits = detect(text)
            seconds[name] += time.perf_counter() - t0
            if not case.phi:
                if hits:
                    alarms[(case.set, name)].append(case.text)
                continue
            if name == "export":
                # The export gate reads scrubbed text: its spans are not in `text`'s
                # coordinates; what counts is whether the identifier stays out of packets.
                found[(form, name)] += _kept_out(text, case.phi)
            else:
                found[(form, name)] += bool(hits)
                covered[(form, name)] += _covered(text, hits, case.phi)
        if case.set == "heldout" and not found[(form, "export")]:
            misses.append(case.text)

    head = " | ".join(f"{d} found / covered" for d in names[:3])
    print(f"| form | set | n | {head} | export keeps it out |")
    print("|---|---|---|" + "---|" * len(names))
    totals: dict[tuple[str, str, str], int] = defaultdict(int)
    for form in n:
        set_ = set_of[form]
        if set_.startswith("negative"):
            continue
        cells = []
        for d in names:
            totals[(set_, d, "found")] += found[(form, d)]
            totals[(set_, d, "covered")] += covered[(form, d)]
            if d != "export":
                cells.append(f"{found[(form, d)]} / {covered[(form, d)]}")
        if set_ != "heldout":
            print(
                f"| {form} | {set_} | {n[form]} | "
                + " | ".join(cells)
                + f" | {found[(form, 'export')]} |"
            )
    for set_ in ("issue", "extra", "gap", "heldout"):
        size = sum(v for f, v in n.items() if set_of[f] == set_)
        cells = [
            f"{totals[(set_, d, 'found')]} / {totals[(set_, d, 'covered')]}" for d in names[:3]
        ]
        print(
            f"| **all {set_}** | | {size} | "
            + " | ".join(cells)
            + f" | {totals[(set_, 'export', 'found')]} |"
        )
    print("\nheld-out cases that would reach a packet:")
    for text in misses:
        print(f"  {text!r}")
    for set_ in ("negative", "negative_heldout"):
        size = sum(v for f, v in n.items() if set_of[f] == set_)
        print(
            f"\n{set_} sentences flagged (of {size}): "
            + ", ".join(f"{d} {len(alarms[(set_, d)])}" for d in names)
        )
        for d in names:
            for text in alarms[(set_, d)]:
                print(f"  {d}: {text!r}")
    per = {d: 1000 * seconds[d] / len(CORPUS) for d in names}
    print("\nms per sentence: " + ", ".join(f"{d} {v:.2f}" for d, v in per.items()))


if __name__ == "__main__":
    main()
