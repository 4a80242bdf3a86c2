"""Read a database's schema from the PostgreSQL catalog, for exact comparisons."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import sqlalchemy as sa

SPEC = Path(__file__).resolve().parent / "data" / "schema-design.md"
SHARED_SPEC = Path(__file__).resolve().parents[2] / "shared" / "spec" / "schema-design.md"


def spec_phase1_ddl(spec: Path = SPEC) -> list[str]:
    """The spec's phase-1 SQL blocks, helper functions first (the tables' triggers use them)."""
    blocks = re.findall(r"```sql\n(.*?)```", spec.read_text(), flags=re.S)
    functions = [b for b in blocks if "CREATE OR REPLACE FUNCTION" in b]
    tables = [b for b in blocks if "CREATE TABLE" in b]
    assert len(functions) == 2 and len(tables) == 3, "the spec's SQL blocks changed shape"
    return functions + tables


def snapshot(conn: sa.Connection, schema: str = "public") -> dict[str, Any]:
    """Columns, constraints, indexes, triggers and functions of ``schema``, as comparable text."""
    q = lambda sql: conn.execute(sa.text(sql), {"s": schema}).all()  # noqa: E731
    columns = q(
        """SELECT c.relname, a.attnum, a.attname, format_type(a.atttypid, a.atttypmod),
                  a.attnotnull, pg_get_expr(d.adbin, d.adrelid), a.attidentity
           FROM pg_attribute a JOIN pg_class c ON c.oid = a.attrelid
           JOIN pg_namespace n ON n.oid = c.relnamespace
           LEFT JOIN pg_attrdef d ON d.adrelid = a.attrelid AND d.adnum = a.attnum
           WHERE n.nspname = :s AND c.relkind IN ('r', 'p') AND a.attnum > 0
             AND NOT a.attisdropped AND c.relname <> 'alembic_version'
           ORDER BY 1, 2"""
    )
    constraints = q(
        """SELECT c.relname, k.conname, k.contype, pg_get_constraintdef(k.oid)
           FROM pg_constraint k JOIN pg_class c ON c.oid = k.conrelid
           JOIN pg_namespace n ON n.oid = c.relnamespace
           WHERE n.nspname = :s AND c.relname <> 'alembic_version' ORDER BY 1, 2"""
    )
    indexes = q(
        """SELECT tablename, indexname, indexdef FROM pg_indexes
           WHERE schemaname = :s AND tablename <> 'alembic_version' ORDER BY 1, 2"""
    )
    triggers = q(
        """SELECT c.relname, t.tgname, pg_get_triggerdef(t.oid)
           FROM pg_trigger t JOIN pg_class c ON c.oid = t.tgrelid
           JOIN pg_namespace n ON n.oid = c.relnamespace
           WHERE n.nspname = :s AND NOT t.tgisinternal ORDER BY 1, 2"""
    )
    functions = q(
        """SELECT p.proname, pg_get_function_identity_arguments(p.oid), pg_get_functiondef(p.oid)
           FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace
           WHERE n.nspname = :s ORDER BY 1, 2"""
    )
    return {
        "columns": [tuple(r) for r in columns],
        "constraints": [tuple(r) for r in constraints],
        "indexes": [tuple(r) for r in indexes],
        "triggers": [tuple(r) for r in triggers],
        "functions": [tuple(r) for r in functions],
        "tables": sorted({r[0] for r in columns}),
    }
