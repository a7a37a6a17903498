"""A report as a list of blocks (headings, paragraphs, tables, figures) rendered twice: Markdown that
links its figures, and one self-contained HTML file with the figures embedded as data URIs.

The HTML fits a 1280 px window: long column names break after ``/`` and ``_``, a table cell can carry a
short text with its full value as a tooltip (``Cell``), and figures scale to the page's width."""

from __future__ import annotations

import base64
import html
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

CSS = """
body { font-family: system-ui, sans-serif; max-width: 1150px; margin: 2em auto; padding: 0 1em; color: #222; }
table { border-collapse: collapse; font-size: 0.8em; margin: 0.5em 0 1.5em; max-width: 100%; }
th, td { border: 1px solid #ccc; padding: 0.25em 0.45em; text-align: right; }
th { background: #f2f2f2; font-weight: 600; vertical-align: bottom; }
td { white-space: nowrap; } td:first-child, th:first-child { text-align: left; }
td span[title] { text-decoration: underline dotted; cursor: help; }
figure { margin: 1em 0 2em; } figure img { max-width: 100%; height: auto; border: 1px solid #eee; }
figcaption { font-size: 0.9em; color: #555; } .note { color: #8a5300; } .legend { font-size: 0.85em; color: #444; }
"""


@dataclass(frozen=True)
class Cell:
    """A table cell shown as ``text``, its full value ``title`` a tooltip in HTML."""

    text: str
    title: str = ""

    def __str__(self) -> str:
        return self.text


@dataclass
class Block:
    kind: str  # "h1" | "h2" | "p" | "note" | "legend" | "table" | "figure"
    text: str = ""
    table: pd.DataFrame | None = None
    path: Path | None = None  # a figure's PNG


@dataclass
class Document:
    title: str
    blocks: list[Block] = field(default_factory=list)

    def heading(self, text: str) -> None:
        self.blocks.append(Block("h2", text))

    def paragraph(self, text: str) -> None:
        self.blocks.append(Block("p", text))

    def note(self, text: str) -> None:
        self.blocks.append(Block("note", text))

    def table(self, frame: pd.DataFrame) -> None:
        self.blocks.append(Block("table", table=frame))

    def legend(self, text: str) -> None:
        """A small line under a table: what its abbreviations stand for."""
        self.blocks.append(Block("legend", text))

    def figure(self, path: Path, caption: str) -> None:
        self.blocks.append(Block("figure", caption, path=path))


def _cell(value) -> str:
    if isinstance(value, Cell):
        return value.text
    if value is None or (not isinstance(value, str) and pd.isna(value)):
        return "–"
    if isinstance(value, float):
        return f"{value:.2f}"
    return str(value)


def markdown_table(frame: pd.DataFrame) -> str:
    header = "| " + " | ".join(str(c) for c in frame.columns) + " |"
    rule = "|" + "|".join("---" for _ in frame.columns) + "|"
    rows = [
        "| " + " | ".join(_cell(v).replace("|", "\\|") for v in row) + " |" for row in frame.itertuples(index=False)
    ]
    return "\n".join([header, rule, *rows])


def to_markdown(doc: Document, base: Path) -> str:
    """Markdown with figure links relative to ``base`` (the directory report.md is written to)."""
    parts = [f"# {doc.title}"]
    for block in doc.blocks:
        if block.kind == "h2":
            parts.append(f"## {block.text}")
        elif block.kind == "p":
            parts.append(block.text)
        elif block.kind == "note":
            parts.append(f"> **Note:** {block.text}")
        elif block.kind == "legend":
            parts.append(f"*{block.text}*")
        elif block.kind == "table":
            parts.append(markdown_table(block.table))
        elif block.kind == "figure":
            parts.append(f"![{block.text}]({block.path.relative_to(base).as_posix()})\n\n*{block.text}*")
    return "\n\n".join(parts) + "\n"


def _html_header(name: str) -> str:
    """A column name that may break after '/' or '_' (metric names are long and have no spaces)."""
    return html.escape(str(name)).replace("/", "/<wbr>").replace("_", "_<wbr>")


def _html_cell(value) -> str:
    text = html.escape(_cell(value))
    if isinstance(value, Cell) and value.title and value.title != value.text:
        return f'<span title="{html.escape(value.title)}">{text}</span>'
    return text


def html_table(frame: pd.DataFrame) -> str:
    head = "".join(f"<th>{_html_header(c)}</th>" for c in frame.columns)
    rows = "".join(
        "<tr>" + "".join(f"<td>{_html_cell(v)}</td>" for v in row) + "</tr>" for row in frame.itertuples(index=False)
    )
    return f"<table><thead><tr>{head}</tr></thead><tbody>{rows}</tbody></table>"


def to_html(doc: Document) -> str:
    """One HTML file, figures inlined as base64 PNGs: it opens anywhere, mailed or attached to a run."""
    parts = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        f"<title>{html.escape(doc.title)}</title><style>{CSS}</style></head><body>",
        f"<h1>{html.escape(doc.title)}</h1>",
    ]
    for block in doc.blocks:
        if block.kind == "h2":
            parts.append(f"<h2>{html.escape(block.text)}</h2>")
        elif block.kind == "p":
            parts.append(f"<p>{html.escape(block.text)}</p>")
        elif block.kind == "note":
            parts.append(f'<p class="note">Note: {html.escape(block.text)}</p>')
        elif block.kind == "table":
            parts.append(html_table(block.table))
        elif block.kind == "legend":
            parts.append(f'<p class="legend">{html.escape(block.text)}</p>')
        elif block.kind == "figure":
            data = base64.b64encode(block.path.read_bytes()).decode("ascii")
            alt = html.escape(block.text)
            parts.append(
                f'<figure><img src="data:image/png;base64,{data}" alt="{alt}"><figcaption>{alt}</figcaption></figure>'
            )
    parts.append("</body></html>")
    return "\n".join(parts) + "\n"
