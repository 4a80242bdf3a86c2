"""The kinds of model flowscope's schema is written with (:mod:`flowscope.models`).

* value types whose validation mirrors the database (lengths, patterns, JSON that
  PostgreSQL can store);
* column helpers (a VARCHAR(255), a server default, a timestamptz);
* the three kinds of model: ``In`` (input: unknown fields are errors, values must be
  storable), ``Update`` (a base's fields made optional, minus the fixed ones) and
  ``Out`` (read from rows, frozen).

Example:
    >>> class Thing(In):
    ...     name: NonEmpty255
    >>> Thing(name="a").values()
    {'name': 'a'}
    >>> try:
    ...     Thing(name="a", colour="red")
    ... except ValueError as exc:
    ...     print(exc.errors()[0]["type"])
    extra_forbidden
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Annotated, Any, ClassVar, Optional, TypeAlias

import sqlalchemy as sa
from pydantic import (
    AfterValidator,
    ConfigDict,
    EmailStr,
    JsonValue,
    StringConstraints,
    model_validator,
)
from pydantic.fields import FieldInfo
from sqlalchemy.dialects import postgresql
from sqlmodel import Field, SQLModel

# -- value types: validation mirrors the database ---------------------------------------------
INT4_MAX = 2_147_483_647


def _no_at(value: str) -> str:
    if "@" in value:
        raise ValueError(
            "a username cannot contain '@': a log-in with '@' is matched against emails only"
        )
    return value


NonEmpty255 = Annotated[str, StringConstraints(min_length=1, max_length=255)]
#: A username: never an email address (``authenticate("x@y")`` looks at emails only).
Username = Annotated[str, StringConstraints(min_length=1, max_length=255), AfterValidator(_no_at)]
Email = Annotated[EmailStr, StringConstraints(max_length=255)]
Slug = Annotated[
    str, StringConstraints(min_length=1, max_length=255, pattern=r"^[a-z0-9][a-z0-9_-]*$")
]
Scope = Annotated[
    str, StringConstraints(min_length=1, max_length=100, pattern=r"^[A-Za-z0-9_.:-]+$")
]
Password = Annotated[str, StringConstraints(min_length=8, max_length=1024)]
if TYPE_CHECKING:  # JSON is validated as JSON, and typed as what callers read from it
    JsonObject: TypeAlias = dict[str, Any]
    JsonArray: TypeAlias = list[Any]
else:
    JsonObject = dict[str, JsonValue]
    JsonArray = list[JsonValue]

NOW = sa.text("CURRENT_TIMESTAMP")
TZ = sa.DateTime(timezone=True)
JSONB = postgresql.JSONB


def varchar(*, required: bool = False, **kwargs: Any) -> Any:
    """A VARCHAR(255) column; ``required``: NOT NULL (the client may still fill it in)."""
    return Field(default=None, max_length=255, nullable=not required, **kwargs)


def primary_id() -> Any:
    return Field(default=None, primary_key=True, min_length=1, max_length=255)


def server_default(
    sa_type: Any, default: str | Any, *, nullable: bool = True, **kwargs: Any
) -> Any:
    """A column with a server default (``default``: SQL text or a SQLAlchemy element)."""
    server_default = sa.text(default) if isinstance(default, str) else default
    return Field(
        default=None,
        sa_type=sa_type,
        nullable=nullable,
        sa_column_kwargs={"server_default": server_default},
        **kwargs,
    )


def timestamptz(*, now: bool = False) -> Any:
    """A timestamptz: ``now``: NOT NULL DEFAULT CURRENT_TIMESTAMP."""
    return server_default(TZ, NOW, nullable=False) if now else Field(default=None, sa_type=TZ)


# -- the three kinds of model ------------------------------------------------------------------
class Model(SQLModel):
    """Every flowscope model: dumps use database column names (``metadata``)."""

    model_config = ConfigDict(  # type: ignore[assignment]
        serialize_by_alias=True, validate_by_name=True, validate_by_alias=True
    )


def check_storable(value: Any, where: str = "value") -> None:
    """Refuse what PostgreSQL cannot store: NUL bytes, lone surrogates, NaN/Infinity in JSON."""
    if isinstance(value, str):
        if "\x00" in value:
            raise ValueError(f"{where}: text may not contain NUL (\\x00) characters")
        try:
            value.encode("utf-8")
        except UnicodeEncodeError:
            raise ValueError(f"{where}: text is not valid Unicode (lone surrogate)") from None
    elif isinstance(value, float):
        if not math.isfinite(value):
            raise ValueError(f"{where}: numbers must be finite (no NaN or Infinity)")
    elif isinstance(value, dict):
        for k, v in value.items():
            check_storable(k, where)
            check_storable(v, where)
    elif isinstance(value, list | tuple):
        for v in value:
            check_storable(v, where)


class In(SQLModel):
    """Input models: unknown fields are errors, every value must be storable."""

    model_config = ConfigDict(extra="forbid")  # type: ignore[assignment]

    @model_validator(mode="after")
    def _storable(self) -> Any:
        for name in type(self).model_fields:
            check_storable(getattr(self, name), name)
        return self

    def values(self) -> dict[str, Any]:
        """The fields that were set, keyed by database column name.

        Example:
            >>> from flowscope.models import WorkflowUpdate
            >>> WorkflowUpdate(metadata_={"team": "ops"}).values()
            {'metadata': {'team': 'ops'}}
        """
        return self.model_dump(exclude_unset=True)


class Update(In):
    """Changes to a row: the base's fields, each optional (only the given ones change),
    minus ``fixed``, the ones that never change after creation."""

    fixed: ClassVar[tuple[str, ...]] = ("id",)

    @classmethod
    def __pydantic_init_subclass__(cls, **kwargs: Any) -> None:
        super().__pydantic_init_subclass__(**kwargs)
        fields = {}
        for name, info in cls.__pydantic_fields__.items():
            if name in cls.fixed:
                continue
            optional = FieldInfo.merge_field_infos(info, default=None)
            optional.annotation = Optional[info.annotation]  # type: ignore[assignment]  # noqa: UP045
            fields[name] = optional
        cls.__pydantic_fields__ = fields
        cls.model_rebuild(force=True)


class Out(SQLModel):
    """Public models: read from database rows (not validated again); extra columns are
    ignored, instances are frozen."""

    model_config = ConfigDict(extra="ignore", frozen=True)  # type: ignore[assignment]

    @classmethod
    def from_row(cls, row: Any) -> Any:
        """An instance from a row mapping, trusting the database's types and constraints.

        Example:
            >>> from flowscope.models import OrganizationPublic
            >>> OrganizationPublic.from_row({"id": "org_1", "name": "Acme", "slug": "acme"}).slug
            'acme'
        """
        return cls.model_construct(**row)

    def __repr_args__(self) -> Any:
        # the database's names, as in dumps and frames (``metadata``, not ``metadata_``)
        for name, value in super().__repr_args__():
            info = type(self).model_fields.get(name) if name else None
            yield (info.serialization_alias or name) if info else name, value

    def _repr_html_(self) -> str:
        """Jupyter: one field per row, long values (graphs, JSON) summarised."""
        from ._display import html_record

        return html_record(type(self).__name__, self.model_dump())


class MetadataAlias:
    @property
    def metadata(self) -> Any:
        """The ``metadata`` column (the field is ``metadata_``; SQLModel reserves the name)."""
        return self.metadata_  # type: ignore[attr-defined]
