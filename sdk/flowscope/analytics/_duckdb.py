"""The analytics builders, compiled for DuckDB: one definition of each metric, two engines.

The builders in this package write each metric once, as a SQLAlchemy expression. PostgreSQL
runs them as they are; the mirror (:mod:`flowscope.mirror`) compiles the very same ``Select``
with :class:`DuckDBDialect`, a PostgreSQL dialect whose compiler renders the handful of
PostgreSQL-only spellings in DuckDB's words. Nothing about a metric is written twice:
only how a function is *spelled* differs, and each rewrite below keeps PostgreSQL's meaning.

=======================================================  =============================================
PostgreSQL                                               DuckDB
=======================================================  =============================================
``percentile_cont(q) WITHIN GROUP (ORDER BY v)``         ``quantile_cont(v, q)`` (same interpolation)
``mode() WITHIN GROUP (ORDER BY v)``                     ``mode(v)`` (ties: see :func:`_visit_mode`)
``date_bin(step, ts, origin)``                           ``time_bucket(step, ts, origin)``
``make_interval(y, m, w, d, h, min)``                    ``to_years(y) + to_months(m) + ...``
``unnest(a[, b]) AS t(x[, y])`` in FROM                  ``(SELECT unnest(a)[, unnest(b)]) AS t(x[, y])``
``jsonb_typeof(j)``                                      ``json_type(j)`` mapped to PostgreSQL's names
``j #>> '{}'``                                           ``json_extract_string(j, '$')``
``btrim(s)``                                             ``trim(s)``
``timezone('UTC', tstz)`` (to a wall-clock timestamp)    ``make_timestamp(epoch_us(tstz))`` (7x faster)
``(array_agg(x ORDER BY y DESC))[1]``                    ``arg_max(x, y)`` (20x faster; see below)
=======================================================  =============================================

``arg_max`` ignores rows whose ``y`` is NULL, where PostgreSQL's ``DESC`` puts them first:
the builders use it on ``created_at`` (NOT NULL); among equal ``y`` both engines keep any.

Parameters stay bound (``$1``, ``$2``...): :func:`compile_for_duckdb` returns the SQL text and
the list of values in order.

Example:
    >>> import sqlalchemy as sa
    >>> from flowscope.models import EXECUTIONS as E
    >>> sql, params = compile_for_duckdb(
    ...     sa.select(sa.func.percentile_cont(0.5).within_group(E.c.duration_seconds).label("p50"))
    ... )
    >>> print(sql)  # doctest: +NORMALIZE_WHITESPACE
    SELECT quantile_cont(executions.duration_seconds, $1) AS p50 FROM executions
    >>> params
    [0.5]
"""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects.postgresql.base import PGCompiler, PGDialect, PGIdentifierPreparer

__all__ = ["DuckDBDialect", "compile_for_duckdb"]

# DuckDB keywords that PostgreSQL lets through unquoted (``AS ev(k, at)``)
_DUCKDB_RESERVED = {"at", "qualify", "pivot", "unpivot", "summarize", "describe", "show"}

# jsonb_typeof's answers for json_type's
_JSON_TYPES = {
    "OBJECT": "object",
    "ARRAY": "array",
    "VARCHAR": "string",
    "BOOLEAN": "boolean",
    "NULL": "null",
    "BIGINT": "number",
    "UBIGINT": "number",
    "DOUBLE": "number",
}


class _Preparer(PGIdentifierPreparer):
    reserved_words = PGIdentifierPreparer.reserved_words | _DUCKDB_RESERVED


class _Compiler(PGCompiler):
    def visit_withingroup(self, withingroup: Any, **kw: Any) -> str:
        func = withingroup.element
        order = [c.element if hasattr(c, "modifier") else c for c in withingroup.order_by]
        value = self.process(order[0], **kw)
        name = func.name.lower()
        if name == "percentile_cont":
            (q,) = func.clauses.clauses
            return f"quantile_cont({value}, {self.process(q, **kw)})"
        if name == "mode":
            return _visit_mode(value)
        return super().visit_withingroup(withingroup, **kw)

    def visit_date_bin_func(self, fn: Any, **kw: Any) -> str:
        return f"time_bucket({self.function_argspec(fn, **kw)[1:-1]})"

    def visit_make_interval_func(self, fn: Any, **kw: Any) -> str:
        units = ("to_years", "to_months", "to_weeks", "to_days", "to_hours", "to_minutes")
        args = [self.process(a, **kw) for a in fn.clauses.clauses]
        # make_interval's arguments are positional from years on; missing ones are 0
        terms = [f"{u}(CAST({a} AS INTEGER))" for u, a in zip(units, args, strict=False)]
        return "(" + " + ".join(terms) + ")"

    def visit_unnest_func(self, fn: Any, **kw: Any) -> str:
        args = [self.process(a, **kw) for a in fn.clauses.clauses]
        if kw.get("asfrom") or kw.get("lateral") or kw.get("from_linter") is not None:
            return "(SELECT " + ", ".join(f"unnest({a})" for a in args) + ")"
        return f"unnest({', '.join(args)})"

    def visit_jsonb_typeof_func(self, fn: Any, **kw: Any) -> str:
        arg = self.process(fn.clauses.clauses[0], **kw)
        whens = " ".join(f"WHEN '{k}' THEN '{v}'" for k, v in _JSON_TYPES.items())
        return f"(CASE json_type({arg}) {whens} END)"

    def visit_timezone_func(self, fn: Any, **kw: Any) -> str:
        zone, value = fn.clauses.clauses
        naive_result = isinstance(fn.type, sa.DateTime) and not fn.type.timezone
        if naive_result and _is_utc(zone):  # timestamptz → UTC wall clock: arithmetic only
            return f"make_timestamp(epoch_us({self.process(value, **kw)}))"
        return f"timezone{self.function_argspec(fn, **kw)}"

    def visit_getitem_binary(self, binary: Any, operator: Any, **kw: Any) -> str:
        first = _first_of_ordered_array_agg(binary)
        if first is not None:
            value, key = first
            return f"arg_max({self.process(value, **kw)}, {self.process(key, **kw)})"
        return super().visit_getitem_binary(binary, operator, **kw)

    def visit_btrim_func(self, fn: Any, **kw: Any) -> str:
        return f"trim{self.function_argspec(fn, **kw)}"

    def visit_custom_op_binary(self, element: Any, operator: Any, **kw: Any) -> str:
        if operator.opstring == "#>>":
            return f"json_extract_string({self.process(element.left, **kw)}, '$')"
        return super().visit_custom_op_binary(element, operator, **kw)


def _is_utc(zone: Any) -> bool:
    value = getattr(zone, "value", None)
    if value is None and isinstance(
        zone, sa.sql.elements.TextClause | sa.sql.elements.ColumnClause
    ):
        value = str(getattr(zone, "text", getattr(zone, "name", ""))).strip("'")
    return isinstance(value, str) and value.upper() == "UTC"


def _first_of_ordered_array_agg(binary: Any) -> tuple[Any, Any] | None:
    """(x, y) when ``binary`` is ``(array_agg(x ORDER BY y DESC))[1]``, else None."""
    from sqlalchemy.dialects.postgresql.ext import aggregate_order_by

    fn, index = binary.left, binary.right
    if getattr(fn, "name", "").lower() != "array_agg" or getattr(index, "value", None) != 1:
        return None
    (arg,) = fn.clauses.clauses if len(fn.clauses.clauses) == 1 else (None,)
    if not isinstance(arg, aggregate_order_by):
        return None
    by: Any = arg.order_by
    order: list[Any] = list(by.clauses) if hasattr(by, "clauses") else [by]
    if len(order) != 1 or getattr(order[0], "modifier", None) is not sa.sql.operators.desc_op:
        return None
    return arg.target, order[0].element


def _visit_mode(value: str) -> str:
    """PostgreSQL's ``mode()`` keeps the first value of the sorted input that reaches the top
    count (ties: the smallest value); DuckDB's ``mode`` picks any of the tied. So: count each
    value (``histogram``), sort by (-count, value) and take the first."""
    entries = f"map_entries(histogram({value}))"
    return f"(list_sort(list_transform({entries}, lambda e: {{'n': -CAST(e.value AS BIGINT), 'k': e.key}}))[1]).k"


class DuckDBDialect(PGDialect):
    """PostgreSQL's dialect with DuckDB's spellings (see the module docstring)."""

    name = "postgresql"  # PostgreSQL's type and operator rendering, DuckDB's functions
    statement_compiler = _Compiler
    preparer = _Preparer
    positional = True
    paramstyle = "numeric_dollar"
    supports_native_boolean = True

    def __init__(self, **kw: Any) -> None:
        super().__init__(paramstyle="numeric_dollar", **kw)


_DIALECT = DuckDBDialect()


def compile_for_duckdb(stmt: sa.ClauseElement) -> tuple[str, list[Any]]:
    """``stmt`` as DuckDB SQL text and its bound values, in order."""
    compiled: Any = stmt.compile(dialect=_DIALECT, compile_kwargs={"render_postcompile": True})
    names = compiled.positiontup or []
    params = compiled.construct_params()
    return str(compiled), [params[name] for name in names]
