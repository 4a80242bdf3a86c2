"""A page of a ``list`` call, and the values its keyset cursor carries."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from typing import Any, Generic, TypeVar

import sqlalchemy as sa
from pydantic import BaseModel

__all__ = ["Page"]

T = TypeVar("T", bound=BaseModel)


@dataclass(frozen=True)
class Page(Generic[T]):
    """One page of a ``list`` call.

    ``has_more`` says whether more rows match; pass ``next_cursor`` as
    ``after=`` to get them. A page never ends silently: walk everything with the
    resource's ``iter(...)``.

    Example:
        >>> page = client.workflows.list(limit=50)
        >>> seen = len(page)
        >>> while page.has_more:
        ...     page = client.workflows.list(limit=50, after=page.next_cursor)
        ...     seen += len(page)
        >>> seen
        200
    """

    items: list[T] = field(default_factory=list)
    has_more: bool = False
    next_cursor: str | None = None

    def __iter__(self) -> Iterator[T]:
        return iter(self.items)

    def __len__(self) -> int:
        return len(self.items)

    def _repr_html_(self) -> str:
        """Jupyter: the items as one table, and whether more pages exist."""
        from .._display import html_rows

        kind = type(self.items[0]).__name__ if self.items else "rows"
        footer = (
            f"more rows exist: pass after={self.next_cursor!r}" if self.has_more else "last page"
        )
        return html_rows(
            f"Page of {len(self.items)} {kind}", [i.model_dump() for i in self.items], footer=footer
        )


def cursor_value(value: Any) -> Any:
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, Decimal):
        return str(value)
    return value


def from_cursor_value(column: sa.Column[Any], value: Any) -> Any:
    if isinstance(column.type, sa.DateTime):
        if not isinstance(value, str):
            raise ValueError
        return datetime.fromisoformat(value)
    if isinstance(column.type, sa.Integer | sa.BigInteger):
        if not isinstance(value, int) or isinstance(value, bool):
            raise ValueError
        return value
    if not isinstance(value, str):
        raise ValueError
    return value
