"""What a reader receives: a CSV to fill in and a self-contained HTML page.

Both are rendered only from `BlindItem`s, which hold nothing but opaque ids and scrubbed text,
so no code path can put a model name, a side or a file name into a packet.
"""

from __future__ import annotations

import base64
import csv
import html
import io
from dataclasses import dataclass

from harness.reader_study.design import (
    ATTRIBUTES,
    QUESTIONS,
    SCALE,
    TASK_INSTRUCTIONS,
    TASK_TITLES,
)

PACKET_COLUMNS = ("study_id", "reader_id", "position", "item_id", "input", "report_a",
                  "report_b", "images", *ATTRIBUTES, "comment")
RATING_COLUMNS = ("study_id", "reader_id", "item_id", *ATTRIBUTES)


@dataclass(frozen=True)
class BlindItem:
    opaque_id: str
    task_input: str
    text_a: str
    text_b: str
    images: tuple[tuple[str, bytes], ...]  # (opaque image id, PNG thumbnail)


def to_csv(rows: list[list[str]]) -> str:
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerows(rows)
    return buf.getvalue()


def packet_csv(study_id: str, reader: str, items: list[BlindItem]) -> str:
    rows = [list(PACKET_COLUMNS)]
    for pos, it in enumerate(items, 1):
        rows.append([study_id, reader, str(pos), it.opaque_id, it.task_input, it.text_a,
                     it.text_b, " ".join(i for i, _ in it.images), *([""] * len(ATTRIBUTES)),
                     ""])
    return to_csv(rows)


_CSS = """
body{font-family:system-ui,sans-serif;max-width:1100px;margin:2em auto;padding:0 1em;color:#222}
.item{border:1px solid #bbb;border-radius:6px;padding:1em;margin:1.5em 0}
.imgs img{max-height:320px;margin:0 .5em .5em 0;border:1px solid #999}
.pair{display:flex;gap:1em}.pair>div{flex:1;background:#f6f6f6;padding:.6em;border-radius:4px}
.q{margin:.5em 0}.q label{margin-right:1em;white-space:nowrap}
.input{background:#eef;padding:.5em;border-radius:4px}
"""

_JS = """
function csvCell(v){v=String(v);return /[",\\n]/.test(v)?'"'+v.replace(/"/g,'""')+'"':v;}
function download(){
  const f=document.getElementById('ratings');const cols=%(cols)s;const attrs=%(attrs)s;
  const lines=[cols.join(',')];let missing=0;
  document.querySelectorAll('.item').forEach(function(div){
    const id=div.dataset.item;const row=[f.dataset.study,f.dataset.reader,id];
    attrs.forEach(function(a){const c=div.querySelector('input[name="'+id+'_'+a+'"]:checked');
      if(!c){missing++;}row.push(c?c.value:'');});
    lines.push(row.map(csvCell).join(','));});
  if(missing&&!confirm(missing+' answers are missing. Download anyway?'))return;
  const blob=new Blob([lines.join('\\n')+'\\n'],{type:'text/csv'});
  const a=document.createElement('a');a.href=URL.createObjectURL(blob);
  a.download=f.dataset.study+'_'+f.dataset.reader+'_ratings.csv';a.click();}
"""


def packet_html(study_id: str, reader: str, task: str, items: list[BlindItem]) -> str:
    esc = html.escape
    input_label = "Indication" if task == "findings_generation" else "Findings"
    report_label = "findings section" if task == "findings_generation" else "impression"
    parts = [
        "<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'>",
        f"<title>Reader study {esc(study_id)} - {esc(reader)}</title>",
        f"<style>{_CSS}</style><script>",
        _JS % {"cols": list(("study_id", "reader_id", "item_id", *ATTRIBUTES)),
               "attrs": list(ATTRIBUTES)},
        "</script></head><body>",
        f"<h1>{esc(TASK_TITLES[task])}: reader {esc(reader)}</h1>",
        f"<p>{esc(TASK_INSTRUCTIONS[task])} For each case answer the three questions on the "
        f"five-point scale. When done, press <b>Download my answers</b> at the bottom and "
        f"return the CSV file (or fill in the packet CSV instead).</p>",
        f"<form id='ratings' data-study='{esc(study_id)}' data-reader='{esc(reader)}' "
        f"onsubmit='return false'>",
    ]
    for pos, it in enumerate(items, 1):
        parts.append(f"<div class='item' data-item='{esc(it.opaque_id)}'>"
                     f"<h2>Case {pos} <small>({esc(it.opaque_id)})</small></h2>")
        if it.images:
            parts.append("<div class='imgs'>")
            for img_id, png in it.images:
                data = base64.b64encode(png).decode("ascii")
                parts.append(f"<img alt='{esc(img_id)}' src='data:image/png;base64,{data}'>")
            parts.append("</div>")
        parts.append(f"<div class='input'><b>{input_label}:</b> {esc(it.task_input)}</div>")
        parts.append(f"<div class='pair'><div><b>A ({report_label})</b><p>{esc(it.text_a)}</p>"
                     f"</div><div><b>B ({report_label})</b><p>{esc(it.text_b)}</p></div></div>")
        for attr in ATTRIBUTES:
            name = f"{it.opaque_id}_{attr}"
            parts.append(f"<div class='q'><b>{esc(attr.capitalize())}.</b> "
                         f"{esc(QUESTIONS[attr])}<br>")
            for code, label in SCALE.items():
                parts.append(f"<label><input type='radio' name='{esc(name)}' value='{code}'> "
                             f"{esc(label)}</label>")
            parts.append("</div>")
        parts.append("</div>")
    parts.append("<button type='button' onclick='download()'>Download my answers</button>"
                 "</form></body></html>\n")
    return "\n".join(parts)
