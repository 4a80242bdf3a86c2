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
``T JOIN LATERAL unnest(f(T.c)) AS u(x) ON true``         ``(SELECT T.*, unnest(f(T.c)) AS __u1_x FROM T)``
                                                         ``AS T``, ``u.x`` read as ``T.__u1_x``
``T JOIN LATERAL unnest(f(T.c)) AS u(x) ON c``            ``T JOIN (SELECT T.id AS __row, unnest(f(T.c))``
                                                         ``AS x FROM T) AS u ON u.__row = T.id AND c``
=======================================================  =============================================

A lateral ``unnest`` over the columns of one table (events of an execution, tags of a
workflow) is correlated: DuckDB decorrelates it by hashing every distinct argument (every
row's array), which cost 7-13x the same rows made by an ``unnest`` in a select list. So
where the lateral joins ``ON true`` and its table ``T`` stands once, plainly, on its left,
``T`` itself is rendered as a subquery with the ``unnest`` in its select list, under ``T``'s
own name (every reference to ``T`` reads on; the lateral's columns become hidden columns of
it): no join at all, 10x cheaper than joining back on a key (throughput at 10M: 1.0 s of
join). ``LEFT OUTER`` keeps a row with NULLs where every array is empty, as
``LEFT JOIN LATERAL`` does; several arrays of unequal length are padded with NULLs, as
PostgreSQL's ``unnest(a, b)`` pads them. Otherwise (another condition, a second lateral over
the same table) the ``unnest`` is joined back on the table's key ``id``.

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

from typing import Any, NamedTuple

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
    dialect: DuckDBDialect

    def __init__(self, dialect: Any, statement: Any, *args: Any, **kw: Any) -> None:
        # found before compiling: the select list (compiled first) names the laterals' columns
        self._inlined = _inlinable_unnests(statement) if statement is not None else {}
        super().__init__(dialect, statement, *args, **kw)

    def visit_column(self, column: Any, *args: Any, **kw: Any) -> str:
        spec = self._inlined.get(getattr(column, "table", None))
        if spec is not None:
            quote = self.preparer.quote
            return f"{self.preparer.format_table(spec.table)}.{quote(spec.prefix + column.name)}"
        return str(super().visit_column(column, *args, **kw))

    def visit_table(self, table: Any, *args: Any, **kw: Any) -> str:
        spec = kw.pop("_inline_unnest", {}).get(table)
        if kw.get("asfrom", args[0] if args else False) and spec is not None:
            name = self.preparer.format_table(table)
            arrays = [self.process(a, **kw) for a in spec.fn.clauses.clauses]
            if spec.outer:  # one row of NULLs where every array is empty, as LEFT JOIN LATERAL
                empty = " AND ".join(f"coalesce(len({a}), 0) = 0" for a in arrays)
                arrays = [f"CASE WHEN {empty} THEN [NULL] ELSE {a} END" for a in arrays]
            unnests = ", ".join(
                f"unnest({a}) AS {self.preparer.quote(spec.prefix + c)}"
                for a, c in zip(arrays, spec.columns, strict=False)
            )
            # compiled fragments and quoted identifiers only (values stay bound parameters)
            return f"(SELECT {name}.*, {unnests} FROM {name}) AS {name}"  # noqa: S608
        return str(super().visit_table(table, *args, **kw))

    def visit_cast(self, cast: Any, **kw: Any) -> str:
        found = self.dialect.derived_column(cast)
        return found if found is not None else str(super().visit_cast(cast, **kw))

    def visit_function(self, func: Any, add_to_result_map: Any = None, **kw: Any) -> str:
        found = self.dialect.derived_column(func)
        if found is not None:
            return found
        return str(super().visit_function(func, add_to_result_map=add_to_result_map, **kw))

    def visit_join(
        self, join: Any, asfrom: bool = False, from_linter: Any = None, **kw: Any
    ) -> str:
        spec = self._inlined.get(join.right)
        if spec is not None:  # rendered inside its table (visit_table); the join goes
            kw["_inline_unnest"] = {**kw.get("_inline_unnest", {}), spec.table: spec}
            return str(
                join.left._compiler_dispatch(self, asfrom=True, from_linter=from_linter, **kw)
            )
        keyed = _keyed_unnest(join.right)
        if keyed is None or join.full:
            return str(super().visit_join(join, asfrom=asfrom, from_linter=from_linter, **kw))
        table, fn = keyed
        left = join.left._compiler_dispatch(self, asfrom=True, from_linter=from_linter, **kw)
        name = join.right.name
        if isinstance(name, sa.sql.elements._truncated_label):
            name = self._truncated_identifier("alias", name)
        alias = self.preparer.format_alias(join.right, name)
        target = self.preparer.format_table(table)
        key = f"{target}.{self.preparer.quote('id')}"
        args = [self.process(a, **kw) for a in fn.clauses.clauses]
        columns = [self.preparer.quote(c.name) for c in join.right.c]
        unnests = ", ".join(f"unnest({a}) AS {c}" for a, c in zip(args, columns, strict=False))
        on = join.onclause._compiler_dispatch(self, from_linter=from_linter, **kw)
        kind = " LEFT OUTER JOIN " if join.isouter else " JOIN "
        # compiled fragments and quoted identifiers only (values stay bound parameters)
        subquery = f"(SELECT {key} AS __row, {unnests} FROM {target})"  # noqa: S608
        return f"{left}{kind}{subquery} AS {alias} ON {alias}.__row = {key} AND ({on})"

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


def _keyed_unnest(right: Any) -> tuple[sa.Table, Any] | None:
    """(T, the unnest call) when ``right`` is ``LATERAL unnest(...)`` whose arguments read the
    columns of one table ``T`` with an ``id`` key (and nothing else), else None."""
    from sqlalchemy.sql import visitors

    if not getattr(right, "_is_lateral", False):
        return None
    fn = right
    while not isinstance(fn, sa.sql.functions.Function) and hasattr(fn, "element"):
        fn = fn.element
    if not isinstance(fn, sa.sql.functions.Function) or fn.name.lower() != "unnest":
        return None
    tables = set()
    for element in visitors.iterate(fn.clauses):
        if isinstance(element, sa.sql.selectable.FromClause | sa.sql.elements.BindParameter):
            return None
        table = getattr(element, "table", None)
        if isinstance(element, sa.Column | sa.sql.elements.ColumnClause) and table is not None:
            tables.add(table)
    if len(tables) != 1:
        return None
    (table,) = tables
    if not isinstance(table, sa.Table) or "id" not in table.c:
        return None
    if len(fn.clauses.clauses) > len(right.c):
        return None
    return table, fn


class _Inline(NamedTuple):
    """A lateral ``unnest`` rendered inside its table: the table, the ``unnest`` call, the
    prefix of its columns' hidden names, whether the join is LEFT OUTER, its column names."""

    table: sa.Table
    fn: Any
    prefix: str
    outer: bool
    columns: list[str]


def _inlinable_unnests(statement: Any) -> dict[Any, _Inline]:
    """The laterals of ``statement`` to render inside their table. A join ``X JOIN LATERAL
    unnest(f(T.c)) ON true`` qualifies when ``T`` stands in ``X`` once, as itself, with no
    other lateral over it."""
    from sqlalchemy.sql import visitors

    found: dict[Any, _Inline] = {}
    for element in visitors.iterate(statement):
        if not isinstance(element, sa.sql.selectable.Join) or element.right in found:
            continue
        keyed = _keyed_unnest(element.right)
        if keyed is None or element.full or not _is_true(element.onclause):
            continue
        table, fn = keyed
        if _plain_occurrences(element.left, table) != 1:
            continue
        found[element.right] = _Inline(
            table,
            fn,
            f"__u{len(found) + 1}_",
            bool(element.isouter),
            [c.name for c in element.right.c],
        )
    return found


def _is_true(clause: Any) -> bool:
    """Whether a join's ON clause is ``sa.true()`` (as given, or coerced to a boolean)."""
    if isinstance(clause, sa.sql.elements.AsBoolean):
        return clause.operator is sa.sql.operators.is_true and _is_true(clause.element)
    return isinstance(clause, sa.sql.elements.True_)


def _plain_occurrences(from_: Any, table: sa.Table) -> int:
    """How often ``table`` stands in a join tree as itself; -1 when the tree holds a lateral
    over it, a subquery or alias, or an ON clause with a subquery (where the table would
    be read in another scope)."""
    from sqlalchemy.sql import visitors

    if isinstance(from_, sa.sql.selectable.Join):
        if any(
            isinstance(e, sa.sql.selectable.FromClause | sa.sql.selectable.SelectBase)
            for e in visitors.iterate(from_.onclause)
        ):
            return -1
        left, right = _plain_occurrences(from_.left, table), _plain_occurrences(from_.right, table)
        return -1 if -1 in (left, right) else left + right
    if from_ is table:
        return 1
    if isinstance(from_, sa.Table):
        return 0
    keyed = _keyed_unnest(from_)
    if keyed is not None and keyed[0] is not table:
        return 0  # a lateral over another table
    return -1


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
    """PostgreSQL's dialect with DuckDB's spellings (see the module docstring).

    ``derived`` maps column names to expressions (functions or casts) that the tables hold
    precomputed: wherever a statement holds the same expression (``ClauseElement.compare``:
    structure and bound values), it reads the column instead (the mirror's native tables,
    :mod:`flowscope.mirror._native`).
    """

    name = "postgresql"  # PostgreSQL's type and operator rendering, DuckDB's functions
    statement_compiler = _Compiler
    preparer = _Preparer
    positional = True
    paramstyle = "numeric_dollar"
    supports_native_boolean = True

    def __init__(self, derived: dict[str, Any] | None = None, **kw: Any) -> None:
        super().__init__(paramstyle="numeric_dollar", **kw)
        self._derived: dict[tuple[Any, ...], list[tuple[Any, str]]] = {}
        for column, expr in (derived or {}).items():
            self._derived.setdefault(_kind(expr), []).append((expr, column))

    def derived_column(self, element: Any) -> str | None:
        """The column holding ``element`` precomputed, or None."""
        for expr, column in self._derived.get(_kind(element), ()):
            if element.compare(expr):
                return column
        return None


def _kind(element: Any) -> tuple[Any, ...]:
    """A cheap fingerprint: only elements of a derived expression's kind are compared."""
    return (type(element), getattr(element, "name", None), type(getattr(element, "clause", None)))


_DIALECT = DuckDBDialect()


def compile_for_duckdb(
    stmt: sa.ClauseElement, dialect: DuckDBDialect = _DIALECT
) -> tuple[str, list[Any]]:
    """``stmt`` as DuckDB SQL text and its bound values, in order."""
    compiled: Any = stmt.compile(dialect=dialect, compile_kwargs={"render_postcompile": True})
    names = compiled.positiontup or []
    params = compiled.construct_params()
    return str(compiled), [params[name] for name in names]
