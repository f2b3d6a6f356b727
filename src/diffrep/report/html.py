"""OUT/index.html: one page per run that a browser opens without a server.

The page is report.md rendered (tables included), then metrics.json as a table, then every picture of the run that
the report does not show, then links to the runs inside OUT (the quickstart's stages), each of which gets its own
page. Pictures are inlined as data URIs, so the page is one file that can be mailed or attached.
"""
from __future__ import annotations

import base64
import html
import json
import re
from pathlib import Path

import markdown

STYLE = """body{font:15px/1.5 system-ui,sans-serif;max-width:1100px;margin:2em auto;padding:0 1em;color:#222}
table{border-collapse:collapse;margin:1em 0}td,th{border:1px solid #ccc;padding:.25em .6em;text-align:left}
th{background:#f4f4f4}img{max-width:100%;border:1px solid #eee}code{background:#f4f4f4;padding:0 .2em}
h1{font-size:1.6em}h2{font-size:1.25em;margin-top:1.6em}.small{color:#666;font-size:.9em}"""


def _inline(match: re.Match, folder: Path) -> str:
    path = folder / html.unescape(match.group(2))
    if match.group(2).startswith(("data:", "http:", "https:")) or not path.is_file():
        return match.group(0)
    data = base64.b64encode(path.read_bytes()).decode()
    return f'{match.group(1)}data:image/{path.suffix.lstrip(".").lower()};base64,{data}{match.group(3)}'


def _metrics_table(metrics: dict) -> str:
    rows = "".join(f"<tr><td><code>{html.escape(str(k))}</code></td><td>{_number(v)}</td></tr>"
                   for k, v in sorted(metrics.items()))
    return f"<table><tr><th>metric</th><th>value</th></tr>{rows}</table>"


def _number(value) -> str:
    return f"{value:.6g}" if isinstance(value, float) else html.escape(str(value))


def _runs_inside(out: Path) -> list[Path]:
    return sorted(p for p in out.iterdir() if p.is_dir() and ((p / "metrics.json").is_file() or
                                                                 (p / "report.md").is_file()))


def write_index(out: str | Path, title: str | None = None) -> Path:
    """Write OUT/index.html (and one page in every run folder inside OUT); return its path."""
    out = Path(out)
    subruns = _runs_inside(out)
    for sub in subruns:
        write_index(sub)
    body = [f"<h1>{html.escape(title or out.name)}</h1>"]
    report = out / "report.md"
    shown = set()
    if report.is_file():
        text = report.read_text()
        shown = set(re.findall(r"!\[[^\]]*\]\(([^)]+)\)", text))
        body.append(markdown.markdown(text, extensions=["tables", "fenced_code"]))
    metrics = out / "metrics.json"
    if metrics.is_file():
        body += ["<h2>Metrics</h2>", _metrics_table(json.loads(metrics.read_text()))]
    pictures = [p for p in sorted(out.glob("*.png")) if p.name not in shown]
    if pictures:
        body.append("<h2>Pictures</h2>")
        body += [f'<p class="small">{p.name}</p><img alt="{p.stem}" src="{p.name}">' for p in pictures]
    if subruns:
        body.append("<h2>Stages</h2><ul>")
        body += [f'<li><a href="{p.name}/index.html">{html.escape(p.name)}</a></li>' for p in subruns]
        body.append("</ul>")
    page = "\n".join(body)
    page = re.sub(r'(<img [^>]*src=")([^"]+)(")', lambda m: _inline(m, out), page)
    path = out / "index.html"
    path.write_text(f"<!doctype html>\n<html><head><meta charset=\"utf-8\"><title>{html.escape(title or out.name)}"
                    f"</title><style>{STYLE}</style></head><body>\n{page}\n</body></html>\n")
    return path
