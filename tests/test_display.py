"""Concise HTML reprs for Jupyter (flowscope._display)."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal

from flowscope import _display, demo


def test_summarize_keeps_values_short() -> None:
    nodes = [{"id": f"n{i}", "type": "transform"} for i in range(9)]
    assert _display.summarize(nodes) == "9 items"
    assert _display.summarize([{"id": "n1"}]) == "1 item"
    assert _display.summarize(["etl", "nightly"]) == "etl, nightly"
    assert _display.summarize([]) == "(empty)"
    assert _display.summarize({}) == "{}"
    assert _display.summarize(True) == "yes"
    assert _display.summarize(Decimal("1.250")) == "1.250"
    moment = datetime(2026, 6, 30, 12, 1, 2, 345678, tzinfo=UTC)
    assert _display.summarize(moment) == "2026-06-30 12:01:02+00:00"
    long = _display.summarize({"message": "x" * 500})
    assert len(long) == _display.MAX_TEXT and long.endswith("…")


def test_html_is_escaped() -> None:
    html = _display.html_record("<Workflow>", {"name": "<script>alert(1)</script>"})
    assert "<script>" not in html and "&lt;script&gt;" in html and "&lt;Workflow&gt;" in html


def test_rows_table_caps_and_notes() -> None:
    rows = [{"id": f"wf_{i}", "tags": ["a"]} for i in range(60)] + [{"id": "x", "extra": 1}]
    html = _display.html_rows("Page", rows, footer="more rows exist", max_rows=50)
    assert html.count("<tr>") == 51  # header + 50 rows
    assert "<th>extra</th>" in html
    assert "11 more rows not shown; more rows exist" in html


def test_demo_data_repr_html() -> None:
    info = demo.DemoData(
        created=True,
        seed=0,
        now=demo.DEMO_NOW,
        days=120,
        organizations=3,
        users=12,
        workflows=200,
        executions=100_000,
        seconds=1.5,
    )
    html = info._repr_html_()
    assert "<th>executions</th><td>100000</td>" in html
    assert "seconds" not in html  # timings are not part of the (stable) display
