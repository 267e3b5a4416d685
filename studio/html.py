"""Small HTML helpers for the server-rendered pages (no template engine, nothing loaded from outside)."""

from __future__ import annotations

import html
from collections.abc import Iterable, Sequence
from typing import Any

import pandas as pd

CSS = """
body{font-family:system-ui,sans-serif;margin:0;color:#222;background:#fafafa}
nav{background:#283044;padding:.6em 1.2em}nav a{color:#fff;margin-right:1.4em;text-decoration:none}
nav .who{float:right;color:#cfd6e6}main{padding:1em 1.6em;max-width:1200px}
h1{font-size:1.5em}h2{font-size:1.2em;margin-top:1.6em}
table{border-collapse:collapse;margin:.5em 0;background:#fff}td,th{border:1px solid #ddd;padding:.25em .6em;
text-align:left;font-size:.9em}th{background:#eef1f6}.num{text-align:right}
.error{background:#fde8e8;border:1px solid #e45756;padding:.6em;white-space:pre-wrap}
.ok{background:#e8f6e8;border:1px solid #54a24b;padding:.6em}.muted{color:#777}
.card{background:#fff;border:1px solid #ddd;padding:.8em;margin:.6em 0}
input,select,button{font-size:.9em;margin:.1em}pre{background:#f3f3f3;padding:.6em;overflow:auto}
.rule{background:#fff;border:1px solid #ccd;padding:.5em;margin:.5em 0}
"""


def esc(value: Any) -> str:
    """Escaped text."""
    return html.escape("" if value is None else str(value))


def page(title: str, body: str, base: str, who: str = "", charts: bool = False) -> str:
    """A whole page: navigation, title, body."""
    script = f"<script src='{base}/static/plotly.js'></script>" if charts else ""
    links = "".join(f"<a href='{base}{href}'>{name}</a>" for name, href in
                    (("Overview", "/"), ("Person", "/person"), ("Segment rules", "/rules"),
                     ("Audiences", "/audiences"), ("Models", "/models")))
    me = f"<span class='who'>{esc(who)} · <a href='{base}/logout'>sign out</a></span>" if who else ""
    return (f"<!doctype html><html><head><meta charset='utf-8'><link rel='icon' href='data:,'><title>{esc(title)} · Persona studio</title>"
            f"<style>{CSS}</style>{script}</head><body><nav>{links}{me}</nav><main><h1>{esc(title)}</h1>"
            f"{body}</main></body></html>")


def table(frame: pd.DataFrame, html_id: str = "") -> str:
    """A data frame as an HTML table (numbers right-aligned)."""
    if frame.empty:
        return "<p class='muted'>none</p>"
    head = "".join(f"<th>{esc(c)}</th>" for c in frame.columns)
    rows = []
    for row in frame.itertuples(index=False):
        cells = []
        for v in row:
            num = isinstance(v, (int, float)) and not isinstance(v, bool)
            text = f"{v:,.4g}" if isinstance(v, float) else v
            cells.append(f"<td class='num'>{esc(text)}</td>" if num else f"<td>{esc(text)}</td>")
        rows.append("<tr>" + "".join(cells) + "</tr>")
    ident = f" id='{html_id}'" if html_id else ""
    return f"<table{ident}><tr>{head}</tr>{''.join(rows)}</table>"


def rows_table(header: Sequence[str], rows: Iterable[Sequence[Any]], html_id: str = "") -> str:
    """A table from plain rows."""
    return table(pd.DataFrame(list(rows), columns=list(header)), html_id)


def options(values: Iterable[str], chosen: str) -> str:
    """``<option>`` elements with ``chosen`` selected."""
    return "".join(f"<option{' selected' if v == chosen else ''}>{esc(v)}</option>" for v in values)


def error(message: str) -> str:
    """An error box."""
    return f"<div class='error' role='alert'>{esc(message)}</div>"


def ok(message: str) -> str:
    """A confirmation box."""
    return f"<div class='ok' role='status'>{esc(message)}</div>"
