"""Concise HTML reprs for Jupyter (flowscope._display)."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal

import flowscope
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


def test_models_and_pages_render_concisely(client: flowscope.Client) -> None:
    nodes = [{"id": f"n{i}", "type": "transform", "name": f"step {i}"} for i in range(12)]
    for i in range(3):
        client.workflows.create(
            id=f"wf_show_{i}",
            name=f"<b>etl {i}</b>",
            owner="ana",
            nodes=nodes,
            edges=[],
            tags=["etl", "nightly"],
        )
    wf = client.workflows.get("wf_show_0")
    html = wf._repr_html_()
    assert "<caption>WorkflowPublic</caption>" in html
    assert "<th>nodes</th><td>12 items</td>" in html and "etl, nightly" in html
    assert "&lt;b&gt;etl 0&lt;/b&gt;" in html and "step 11" not in html
    assert len(html) < len(repr(wf))

    page = client.workflows.list(limit=2, order_by="id")
    html = page._repr_html_()
    assert "<caption>Page of 2 WorkflowPublic</caption>" in html
    assert html.count("<tr>") == 3 and "more rows exist: pass after=" in html
    last = client.workflows.list(limit=2, order_by="id", after=page.next_cursor)
    assert "last page" in last._repr_html_()
    empty = client.workflows.list(search="nothing matches this")
    assert "Page of 0 rows" in empty._repr_html_()
