"""Concise HTML for Jupyter: ``_repr_html_`` of models, pages and results.

A workflow's default repr prints its whole graph; here long values are summarised
(``8 items``, truncated JSON), timestamps are shown to the second, and a page
says whether more rows exist. Everything is escaped.

Example:
    >>> from flowscope._display import html_record
    >>> print(html_record("Workflow", {"id": "wf_1", "tags": ["a", "b"], "nodes": [{}, {}]}))
    ... # doctest: +NORMALIZE_WHITESPACE
    <table class="flowscope"><caption>Workflow</caption><tr><th>id</th><td>wf_1</td></tr><tr><th>tags</th><td>a, b</td></tr><tr><th>nodes</th><td>2 items</td></tr></table>
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime
from decimal import Decimal
from html import escape
from typing import Any

__all__ = ["html_record", "html_rows", "progress_bar", "summarize"]

MAX_TEXT = 80
MAX_ROWS = 50
_STYLE = ' class="flowscope"'


def summarize(value: Any, *, width: int = MAX_TEXT) -> str:
    """A short, plain-text rendering of one value (not yet escaped).

    Example:
        >>> summarize([{"id": "n1"}, {"id": "n2"}])
        '2 items'
        >>> summarize({"type": "KeyError", "message": "missing field"})
        '{"type": "KeyError", "message": "missing field"}'
        >>> summarize(None)
        '—'
    """
    if value is None:
        return "—"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, datetime):
        return value.isoformat(sep=" ", timespec="seconds")
    if isinstance(value, Decimal | int | float):
        return str(value)
    if isinstance(value, str):
        text = value
    elif isinstance(value, Sequence):
        if all(isinstance(v, str | int | float) for v in value):
            text = ", ".join(str(v) for v in value) if value else "(empty)"
        else:
            return f"{len(value)} item{'' if len(value) == 1 else 's'}"
    elif isinstance(value, Mapping):
        text = json.dumps(value, default=str, ensure_ascii=False) if value else "{}"
    else:
        text = str(value)
    return text if len(text) <= width else text[: width - 1] + "…"


def html_record(title: str, fields: Mapping[str, Any]) -> str:
    """One object as a two-column HTML table (field, summarised value)."""
    rows = "".join(
        f"<tr><th>{escape(str(k))}</th><td>{escape(summarize(v))}</td></tr>"
        for k, v in fields.items()
    )
    return f"<table{_STYLE}><caption>{escape(title)}</caption>{rows}</table>"


def html_rows(
    title: str,
    rows: Iterable[Mapping[str, Any]],
    *,
    footer: str | None = None,
    max_rows: int = MAX_ROWS,
    width: int = 40,
) -> str:
    """Many objects as one HTML table (a row each, summarised values), at most ``max_rows``."""
    materialized = list(rows)
    columns: list[str] = []
    for row in materialized:
        columns.extend(k for k in row if k not in columns)
    head = "".join(f"<th>{escape(c)}</th>" for c in columns)
    body = "".join(
        "<tr>"
        + "".join(f"<td>{escape(summarize(row.get(c), width=width))}</td>" for c in columns)
        + "</tr>"
        for row in materialized[:max_rows]
    )
    notes = []
    if len(materialized) > max_rows:
        notes.append(f"{len(materialized) - max_rows} more rows not shown")
    if footer:
        notes.append(footer)
    foot = f"<p>{escape('; '.join(notes))}</p>" if notes else ""
    table = f"<table{_STYLE}><caption>{escape(title)}</caption>"
    table += f"<thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"
    return table + foot


class _NoProgress:
    """What a disabled progress bar is: no output, and no tqdm import."""

    def update(self, n: int = 1) -> None:
        pass

    def set_postfix_str(self, s: str = "") -> None:
        pass

    def close(self) -> None:
        pass


def progress_bar(enabled: bool, **kwargs: Any) -> Any:
    """A ``tqdm.auto`` bar (a widget in Jupyter when ipywidgets is there, else text) with
    ``kwargs``, or a no-op with the same ``update``/``set_postfix_str``/``close``.

    Example:
        >>> bar = progress_bar(False, total=10)
        >>> bar.update(5); bar.close()
    """
    if not enabled:
        return _NoProgress()
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # TqdmWarning: IProgress not found (no ipywidgets)
        from tqdm.auto import tqdm

    return tqdm(**kwargs)
