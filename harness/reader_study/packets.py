"""What a reader receives: a CSV to fill in and a self-contained HTML page.

Both are rendered only from `BlindItem`s, which hold nothing but opaque ids and scrubbed text,
so no code path can put a model name, a side or a file name into a packet. The HTML page is a
file opened offline: it keeps each answer in the browser as it is given (a closed tab loses
nothing), enlarges a film on click, takes a comment per case, and downloads a ratings CSV
that `reader-study analyze` reads.
"""

from __future__ import annotations

import base64
import csv
import html
import io
import json
from dataclasses import dataclass

from harness.reader_study.design import (
    ATTRIBUTES,
    QUESTIONS,
    SCALE,
    TASK_INSTRUCTIONS,
    TASK_TITLES,
)

PACKET_COLUMNS = (
    "study_id",
    "reader_id",
    "position",
    "item_id",
    "input",
    "report_a",
    "report_b",
    "images",
    *ATTRIBUTES,
    "comment",
)
RATING_COLUMNS = ("study_id", "reader_id", "item_id", *ATTRIBUTES)
# What the HTML page's download holds: the ratings and the reader's comment per case.
DOWNLOAD_COLUMNS = (*RATING_COLUMNS, "comment")


@dataclass(frozen=True)
class BlindItem:
    opaque_id: str
    task_input: str
    text_a: str
    text_b: str
    images: tuple[tuple[str, bytes], ...]  # (opaque image id, PNG thumbnail)


# A cell starting with one of these is a formula when the CSV is opened in a spreadsheet
# (OWASP "CSV injection"); report text and model output can start with any of them.
FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


def to_csv(rows: list[list[str]], verbatim_columns: frozenset[int] = frozenset()) -> str:
    """The one CSV writer of the reader study (packets, REDCap files). A cell a spreadsheet
    would run as a formula gets a leading `'` (OWASP's advice), so a radiologist opening the
    file in Excel sees text; `verbatim_columns` are written as they are, for REDCap action
    tags (`@DEFAULT=...`) that REDCap itself must read. `reader-study analyze` reads back only
    ids and answers, which never start with these characters."""
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerows(
        [
            "'" + cell if i not in verbatim_columns and cell.startswith(FORMULA_START) else cell
            for i, cell in enumerate(row)
        ]
        for row in rows
    )
    return buf.getvalue()


def packet_csv(study_id: str, reader: str, items: list[BlindItem]) -> str:
    rows = [list(PACKET_COLUMNS)]
    for pos, it in enumerate(items, 1):
        rows.append(
            [
                study_id,
                reader,
                str(pos),
                it.opaque_id,
                it.task_input,
                it.text_a,
                it.text_b,
                " ".join(i for i, _ in it.images),
                *([""] * len(ATTRIBUTES)),
                "",
            ]
        )
    return to_csv(rows)


_CSS = """
body{font-family:system-ui,sans-serif;max-width:1100px;margin:0 auto 2em;padding:0 1em;color:#222}
.warning{background:#fde2e1;border:2px solid #b3261e;color:#5f1412;padding:.8em 1em;
  margin:1em 0;border-radius:6px;font-weight:600}
#progress{position:sticky;top:0;z-index:1;background:#fff;border-bottom:1px solid #ccc;
  padding:.5em 0;margin:0}
.item{border:1px solid #bbb;border-radius:6px;padding:1em;margin:1.5em 0}
.imgs img{max-height:320px;margin:0 .5em .5em 0;border:1px solid #999;cursor:zoom-in}
.pair{display:flex;gap:1em}.pair>div{flex:1;background:#f6f6f6;padding:.6em;border-radius:4px}
.q{margin:.5em 0}.q label{margin-right:1em;white-space:nowrap}
.q textarea{width:100%;box-sizing:border-box;font:inherit}
.input{background:#eef;padding:.5em;border-radius:4px}
#viewer{position:fixed;inset:0;z-index:10;background:#111;display:flex;flex-direction:column}
#viewer[hidden]{display:none}
#viewer .bar{padding:.4em;background:#333}#viewer .bar button{margin-right:.4em}
#viewer .stage{flex:1;overflow:auto;display:flex;cursor:grab}
#viewer .stage img{margin:auto;max-width:none;max-height:none}
"""

# Answers are kept in the browser's localStorage under one key per study, reader and case, so
# a closed tab or a crash loses nothing and two packets on one computer never mix. Nothing
# leaves the page: no request is made, and the Content-Security-Policy forbids any.
_JS = """
(function () {
  'use strict';
  const form = document.getElementById('ratings');
  const STUDY = form.dataset.study, READER = form.dataset.reader;
  const ATTRS = %(attrs)s, COLS = %(cols)s;
  const items = Array.from(document.querySelectorAll('.item'));
  let store = null;
  try {
    localStorage.setItem('chexbench-probe', '1');
    localStorage.removeItem('chexbench-probe');
    store = localStorage;
  } catch (e) { store = null; }
  function keyOf(div) { return 'chexbench-reader-study/' + STUDY + '/' + READER + '/' + div.dataset.item; }
  function stateOf(div) {
    const s = {comment: div.querySelector('textarea').value};
    ATTRS.forEach(function (a) {
      const c = div.querySelector('input[name="' + div.dataset.item + '_' + a + '"]:checked');
      s[a] = c ? c.value : '';
    });
    return s;
  }
  function save(div) {
    if (!store) return;
    try { store.setItem(keyOf(div), JSON.stringify(stateOf(div))); }
    catch (e) { store = null; progress(); }
  }
  function restore() {
    if (!store) return;
    items.forEach(function (div) {
      let s = null;
      try { s = JSON.parse(store.getItem(keyOf(div)) || 'null'); } catch (e) { s = null; }
      if (!s) return;
      ATTRS.forEach(function (a) {
        if (!/^[1-5]$/.test(String(s[a]))) return;
        const r = div.querySelector('input[name="' + div.dataset.item + '_' + a + '"][value="' + s[a] + '"]');
        if (r) r.checked = true;
      });
      if (typeof s.comment === 'string') div.querySelector('textarea').value = s.comment;
    });
  }
  function progress() {
    const total = items.length * ATTRS.length;
    const done = form.querySelectorAll('input[type=radio]:checked').length;
    document.getElementById('progress').textContent = done + ' of ' + total + ' answers given. ' +
      (store ? 'Saved in this browser as you answer: closing the tab loses nothing.'
             : 'This browser does not let the page save answers: download them before closing the tab.');
  }
  form.addEventListener('change', function (e) {
    const div = e.target.closest('.item'); if (div) save(div); progress();
  });
  form.addEventListener('input', function (e) {
    if (e.target.tagName === 'TEXTAREA') save(e.target.closest('.item'));
  });
  function csvCell(v) { v = String(v); return /[",\\r\\n]/.test(v) ? '"' + v.replace(/"/g, '""') + '"' : v; }
  document.getElementById('download').addEventListener('click', function () {
    const lines = [COLS.join(',')]; let missing = 0;
    items.forEach(function (div) {
      const s = stateOf(div), row = [STUDY, READER, div.dataset.item];
      ATTRS.forEach(function (a) { if (!s[a]) missing++; row.push(s[a]); });
      row.push(s.comment);
      lines.push(row.map(csvCell).join(','));
    });
    if (missing && !confirm(missing + ' answers are missing. Download anyway?')) return;
    const blob = new Blob([lines.join('\\n') + '\\n'], {type: 'text/csv'});
    const a = document.createElement('a');
    a.href = URL.createObjectURL(blob); a.download = STUDY + '_' + READER + '_ratings.csv';
    document.body.appendChild(a); a.click(); a.remove();
  });

  // Click-to-zoom: a film opens full-window; +/- or the wheel zoom, drag pans, Esc closes.
  const viewer = document.getElementById('viewer'), stage = viewer.querySelector('.stage');
  const big = stage.querySelector('img');
  let scale = 1, opener = null, drag = null;
  function fit() { return Math.min(stage.clientWidth / big.naturalWidth, stage.clientHeight / big.naturalHeight); }
  function zoom(s) {
    scale = Math.max(0.05, Math.min(s, 20));
    big.style.width = Math.round(big.naturalWidth * scale) + 'px';
    big.style.height = Math.round(big.naturalHeight * scale) + 'px';
  }
  function open(img) {
    opener = img; viewer.hidden = false; document.body.style.overflow = 'hidden';
    big.onload = function () { zoom(fit()); };
    big.alt = img.alt; big.src = img.src;
    if (big.complete && big.naturalWidth) zoom(fit());
    viewer.querySelector('[data-zoom=close]').focus();
  }
  function close() {
    viewer.hidden = true; document.body.style.overflow = '';
    if (opener) opener.focus();
  }
  document.querySelectorAll('img.film').forEach(function (img) {
    img.addEventListener('click', function () { open(img); });
    img.addEventListener('keydown', function (e) {
      if (e.key === 'Enter' || e.key === ' ') { e.preventDefault(); open(img); }
    });
  });
  viewer.querySelector('.bar').addEventListener('click', function (e) {
    const z = e.target.dataset ? e.target.dataset.zoom : null;
    if (z === 'in') zoom(scale * 1.25);
    else if (z === 'out') zoom(scale / 1.25);
    else if (z === 'fit') zoom(fit());
    else if (z === 'close') close();
  });
  stage.addEventListener('wheel', function (e) {
    e.preventDefault(); zoom(scale * (e.deltaY < 0 ? 1.1 : 1 / 1.1));
  }, {passive: false});
  stage.addEventListener('mousedown', function (e) {
    drag = {x: e.clientX, y: e.clientY, left: stage.scrollLeft, top: stage.scrollTop};
    e.preventDefault();
  });
  window.addEventListener('mousemove', function (e) {
    if (!drag) return;
    stage.scrollLeft = drag.left - (e.clientX - drag.x);
    stage.scrollTop = drag.top - (e.clientY - drag.y);
  });
  window.addEventListener('mouseup', function () { drag = null; });
  document.addEventListener('keydown', function (e) {
    if (viewer.hidden) return;
    if (e.key === 'Escape') close();
    else if (e.key === '+' || e.key === '=') zoom(scale * 1.25);
    else if (e.key === '-') zoom(scale / 1.25);
    else if (e.key === '0') zoom(fit());
  });

  restore();
  progress();
})();
"""

_VIEWER = (
    "<div id='viewer' hidden role='dialog' aria-modal='true' aria-label='Enlarged film'>"
    "<div class='bar'><button type='button' data-zoom='in'>Zoom in (+)</button>"
    "<button type='button' data-zoom='out'>Zoom out (-)</button>"
    "<button type='button' data-zoom='fit'>Fit (0)</button>"
    "<button type='button' data-zoom='close'>Close (Esc)</button></div>"
    "<div class='stage'><img alt=''></div></div>"
)
# Packets are opened from disk, offline: nothing may be fetched, whatever the texts hold.
_CSP = (
    "default-src 'none'; img-src data: blob:; style-src 'unsafe-inline'; script-src 'unsafe-inline'"
)


def packet_html(
    study_id: str, reader: str, task: str, items: list[BlindItem], warning: str | None = None
) -> str:
    """The reader's page: cases with zoomable films, answers kept in the browser, a download.

    `warning` (a study from a synthetic or random-weight run) is shown as a banner on top.
    """
    esc = html.escape
    input_label = "Indication" if task == "findings_generation" else "Findings"
    report_label = "findings section" if task == "findings_generation" else "impression"
    parts = [
        "<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'>",
        f"<meta http-equiv='Content-Security-Policy' content=\"{_CSP}\">",
        f"<title>Reader study {esc(study_id)} - {esc(reader)}</title>",
        f"<style>{_CSS}</style></head><body>",
    ]
    if warning:
        parts.append(f"<div id='demo-warning' class='warning' role='alert'>{esc(warning)}</div>")
    parts += [
        f"<h1>{esc(TASK_TITLES[task])}: reader {esc(reader)}</h1>",
        f"<p>{esc(TASK_INSTRUCTIONS[task])} For each case answer the three questions on the "
        f"five-point scale; a comment is optional. Click a film to enlarge it. Your answers "
        f"are saved in this browser as you give them, so you can close the page and come "
        f"back. When done, press <b>Download my answers</b> at the bottom and return the CSV "
        f"file (or fill in the packet CSV instead).</p>",
        "<p id='progress' aria-live='polite'></p>",
        f"<form id='ratings' data-study='{esc(study_id)}' data-reader='{esc(reader)}' "
        f"onsubmit='return false'>",
    ]
    for pos, it in enumerate(items, 1):
        parts.append(
            f"<div class='item' data-item='{esc(it.opaque_id)}'>"
            f"<h2>Case {pos} <small>({esc(it.opaque_id)})</small></h2>"
        )
        if it.images:
            parts.append("<div class='imgs'>")
            for img_id, png in it.images:
                data = base64.b64encode(png).decode("ascii")
                parts.append(
                    f"<img class='film' tabindex='0' title='Click to enlarge' "
                    f"alt='{esc(img_id)}' src='data:image/png;base64,{data}'>"
                )
            parts.append("</div>")
        parts.append(f"<div class='input'><b>{input_label}:</b> {esc(it.task_input)}</div>")
        parts.append(
            f"<div class='pair'><div><b>A ({report_label})</b><p>{esc(it.text_a)}</p>"
            f"</div><div><b>B ({report_label})</b><p>{esc(it.text_b)}</p></div></div>"
        )
        for attr in ATTRIBUTES:
            name = f"{it.opaque_id}_{attr}"
            parts.append(
                f"<div class='q'><b>{esc(attr.capitalize())}.</b> {esc(QUESTIONS[attr])}<br>"
            )
            for code, label in SCALE.items():
                parts.append(
                    f"<label><input type='radio' name='{esc(name)}' value='{code}'> "
                    f"{esc(label)}</label>"
                )
            parts.append("</div>")
        comment = f"{it.opaque_id}_comment"
        parts.append(
            f"<div class='q'><label for='{esc(comment)}'><b>Comment</b> (optional)"
            f"</label><textarea id='{esc(comment)}' name='{esc(comment)}' rows='2'>"
            "</textarea></div>"
        )
        parts.append("</div>")
    parts.append("<button type='button' id='download'>Download my answers</button></form>")
    parts.append(_VIEWER)
    parts.append(
        "<script>"
        + _JS % {"cols": json.dumps(list(DOWNLOAD_COLUMNS)), "attrs": json.dumps(list(ATTRIBUTES))}
        + "</script>"
    )
    parts.append("</body></html>\n")
    return "\n".join(parts)
