"""The study's tables as people read them, and the skeleton every summary job shares.

Each summary (screening's Tables 1-4, the final models' Table 5, the segment comparison)
is written three ways from one Markdown text: `<name>.csv` (every number), `<name>.md` (for
a terminal or a code host) and `<name>.html` (what Snakemake's report shows: it displays
HTML, PNG, SVG and PDF inline, and offers Markdown and CSV only as downloads). The caveats
(`genreflow.run_info.caveats`) open every one of them in bold (`caveat_banner`), and are
logged as warnings.

The Markdown is this package's own, so the HTML is rendered here (`markdown_to_html`) from
the subset the tables use: paragraphs, `### ` headings, blockquotes, `**bold**`, and pipe
tables whose cells may hold `<br>`. No dependency beyond the standard library.
"""

from __future__ import annotations

import html
import re
from collections.abc import Sequence

from genreflow.io import write_csv, write_text_atomic

STYLE = (
    "body{font-family:sans-serif;font-size:13px;max-width:1100px}"
    "table{border-collapse:collapse;margin:6px 0 14px}"
    "th,td{border:1px solid #ccc;padding:4px 7px;vertical-align:top}"
    "th{background:#f3f3f3}td{text-align:right}td:nth-child(-n+2){text-align:left}"
    "blockquote{margin:6px 0;color:#b00020}"
)


def caveat_banner(notes: Sequence[str]) -> list[str]:
    """The Markdown lines that open a table with its run's caveats, in bold."""
    return [f"> **{note}**\n" for note in notes]


def _inline(text: str) -> str:
    """Escape a line and keep the inline markup the tables use: **bold**, `code`, <br>."""
    escaped = html.escape(text, quote=False).replace("&lt;br&gt;", "<br>")
    escaped = re.sub(r"\*\*(.+?)\*\*", r"<b>\1</b>", escaped)
    return re.sub(r"`([^`]+)`", r"<code>\1</code>", escaped)


def _table(rows: list[str]) -> str:
    cells = [[cell.strip() for cell in row.strip().strip("|").split("|")] for row in rows]
    header, body = cells[0], cells[2:]  # cells[1] is the |---| alignment row
    parts = ["<table>", "<tr>" + "".join(f"<th>{_inline(c)}</th>" for c in header) + "</tr>"]
    parts += ["<tr>" + "".join(f"<td>{_inline(c)}</td>" for c in row) + "</tr>" for row in body]
    return "\n".join(parts + ["</table>"])


def markdown_to_html(markdown: str, title: str) -> str:
    """A self-contained HTML page of a table's Markdown (the subset this package writes)."""
    blocks, paragraph, table = [], [], []

    def flush() -> None:
        if paragraph:
            blocks.append(f"<p>{_inline(' '.join(paragraph))}</p>")
            paragraph.clear()
        if table:
            blocks.append(_table(table))
            table.clear()

    for line in markdown.splitlines():
        stripped = line.strip()
        if stripped.startswith("|"):
            if paragraph:
                flush()
            table.append(stripped)
            continue
        if table:
            flush()
        if not stripped:
            flush()
        elif stripped.startswith(">"):
            flush()
            blocks.append(f"<blockquote>{_inline(stripped.lstrip('> '))}</blockquote>")
        elif stripped.startswith("### "):
            flush()
            blocks.append(f"<h3>{_inline(stripped[4:])}</h3>")
        else:
            paragraph.append(stripped)
    flush()
    return ("<!DOCTYPE html>\n<html><head><meta charset=\"utf-8\">"
            f"<title>{html.escape(title)}</title><style>{STYLE}</style></head><body>\n"
            + "\n".join(blocks) + "\n</body></html>\n")


# The skeleton of every summary job: its caveats logged, its table written three ways.
def write_summary(table, markdown: str, title: str, notes: Sequence[str], out_csv: str,
                  out_markdown: str, out_html: str, log=print) -> None:
    """Log the caveats as warnings, then write `table` (CSV) and `markdown` as Markdown and
    as the report's HTML page."""
    for note in notes:
        log("WARNING: " + note)
    write_csv(out_csv, table)
    write_text_atomic(out_markdown, markdown)
    write_text_atomic(out_html, markdown_to_html(markdown, title))
