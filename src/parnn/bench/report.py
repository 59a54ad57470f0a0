"""Reports rendered from results alone: a self-contained Markdown file and an HTML page
with the plots embedded, so that re-rendering never needs a re-run.

A study's builder turns its results directory (``study.json`` and ``cells.jsonl``, see
:mod:`parnn.bench.cells`) into a :class:`Report` of sections: prose, tables and images (PNG
files it may draw into the directory); :func:`render_study` writes it. The machine facts
close every report. Which builder a directory needs is :mod:`parnn.bench.render`'s to
know (it sits above the studies; this module knows none of them).
"""

from __future__ import annotations

import base64
import html
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from parnn.bench.cells import StudyStore
from parnn.errors import CheckpointError
from parnn.results import atomic_write_text

__all__ = [
    "Report",
    "Section",
    "StudyData",
    "Table",
    "ReportBuilder",
    "render_study",
    "to_html",
    "to_markdown",
    "write_report",
]


@dataclass(frozen=True, slots=True)
class Table:
    """A table of text cells; numbers are formatted by whoever builds it."""

    columns: Sequence[str]
    rows: Sequence[Sequence[str]]
    caption: str = ""


@dataclass(frozen=True, slots=True)
class Section:
    """A titled part of a report: paragraphs, then tables, then images (paths)."""

    title: str
    paragraphs: Sequence[str] = ()
    tables: Sequence[Table] = ()
    images: Sequence[Path] = ()


@dataclass(frozen=True, slots=True)
class Report:
    title: str
    sections: Sequence[Section]
    machine: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class StudyData:
    """What a report builder reads: the header, the cell records and the directory."""

    directory: Path
    header: Mapping[str, Any]
    records: Sequence[Mapping[str, Any]]

    @property
    def settings(self) -> Mapping[str, Any]:
        return dict(self.header.get("settings", {}))


ReportBuilder = Callable[[StudyData], Report]


def render_study(directory: str | Path, builder: ReportBuilder) -> tuple[Path, Path]:
    """Render ``report.md`` and ``report.html`` of the study in ``directory`` with
    ``builder``, from its results alone."""
    store = StudyStore(directory)
    header = store.header()
    records = store.records()
    if not records:
        raise CheckpointError(
            f"{store.directory} holds no finished cell yet: run the study first (or let it "
            "finish at least one cell)"
        )
    report = builder(StudyData(store.directory, header, records))
    return write_report(store.directory, report, header.get("machine", {}))


def write_report(
    directory: Path, report: Report, machine: Mapping[str, Any] | None = None
) -> tuple[Path, Path]:
    """Write ``report`` (closed by the ``machine`` facts) as ``report.md`` and
    ``report.html`` in ``directory``."""
    report = Report(report.title, report.sections, machine or report.machine)
    markdown_path = atomic_write_text(directory / "report.md", to_markdown(report))
    html_path = atomic_write_text(directory / "report.html", to_html(report, directory))
    return markdown_path, html_path


def _machine_table(machine: Mapping[str, Any]) -> Table:
    rows = [(str(name), str(value)) for name, value in machine.items()]
    return Table(("fact", "value"), rows)


def to_markdown(report: Report) -> str:
    lines = [f"# {report.title}", ""]
    sections = [*report.sections]
    if report.machine:
        sections.append(Section("Machine", tables=[_machine_table(report.machine)]))
    for section in sections:
        lines += [f"## {section.title}", ""]
        for paragraph in section.paragraphs:
            lines += [paragraph, ""]
        for table in section.tables:
            if table.caption:
                lines += [f"*{table.caption}*", ""]
            lines.append("| " + " | ".join(table.columns) + " |")
            lines.append("| " + " | ".join("---" for _ in table.columns) + " |")
            lines += ["| " + " | ".join(str(c) for c in row) + " |" for row in table.rows]
            lines.append("")
        for image in section.images:
            lines += [f"![{image.stem}]({image.name})", ""]
    return "\n".join(lines)


_STYLE = """
body { font-family: system-ui, sans-serif; max-width: 1100px; margin: 2em auto; padding: 0 1em;
       color: #222; }
table { border-collapse: collapse; margin: 0.5em 0 1.5em; }
th, td { border: 1px solid #ccc; padding: 4px 10px; text-align: right; }
th { background: #f3f3f3; } td:first-child, th:first-child { text-align: left; }
caption { caption-side: top; font-style: italic; text-align: left; padding-bottom: 4px; }
img { max-width: 100%; border: 1px solid #ddd; margin: 0.5em 0; }
"""


def _image_tag(path: Path, directory: Path) -> str:
    full = path if path.is_absolute() else directory / path
    if not full.exists():
        return f"<p><em>missing image {html.escape(path.name)}</em></p>"
    data = base64.b64encode(full.read_bytes()).decode("ascii")
    return f'<img alt="{html.escape(full.stem)}" src="data:image/png;base64,{data}">'


def to_html(report: Report, directory: Path) -> str:
    parts = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        f"<title>{html.escape(report.title)}</title><style>{_STYLE}</style></head><body>",
        f"<h1>{html.escape(report.title)}</h1>",
    ]
    sections = [*report.sections]
    if report.machine:
        sections.append(Section("Machine", tables=[_machine_table(report.machine)]))
    for section in sections:
        parts.append(f"<h2>{html.escape(section.title)}</h2>")
        parts += [f"<p>{html.escape(p)}</p>" for p in section.paragraphs]
        for table in section.tables:
            parts.append("<table>")
            if table.caption:
                parts.append(f"<caption>{html.escape(table.caption)}</caption>")
            parts.append(
                "<tr>" + "".join(f"<th>{html.escape(c)}</th>" for c in table.columns) + "</tr>"
            )
            for row in table.rows:
                parts.append(
                    "<tr>" + "".join(f"<td>{html.escape(str(c))}</td>" for c in row) + "</tr>"
                )
            parts.append("</table>")
        parts += [_image_tag(image, directory) for image in section.images]
    parts.append("</body></html>")
    return "\n".join(parts)
