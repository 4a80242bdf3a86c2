"""The error boundary of the public API: only flowscope errors leave a public call.

Every public method of the client, the resources, analytics, export, retention and
maintenance runs inside :func:`boundary` (classes get it by deriving from
:class:`Guarded`, which wraps each public method, inherited ones included, when the
class is defined). Whatever escapes the method body becomes a flowscope error, with
the original kept as ``__cause__``:

=============================================  ==========================================
escaped                                        raised
=============================================  ==========================================
a :class:`~flowscope.FlowscopeError`           unchanged
a driver error (SQLAlchemy, psycopg)           :func:`flowscope._db.translate` (precise)
``OSError`` (a path that cannot be written)    :class:`ConfigurationError` naming the path
``TypeError``, ``ValueError``,                 :class:`ValidationError` naming the
``OverflowError``, ``LookupError``,            argument(s) (those whose value does not
``AttributeError``, ``ArithmeticError``        fit the annotation, else those given)
a wrong call (unknown keyword, missing one)    :class:`ValidationError` with Python's text
anything else                                  :class:`FlowscopeError` naming the call
=============================================  ==========================================

Iterators a method returns are wrapped too: they fail while being iterated.
``KeyboardInterrupt``, ``SystemExit`` and other ``BaseException``s pass through.
Methods listed in a class's ``_unguarded`` (context managers that hand the caller a
connection: what the caller's own block raises is the caller's) are left alone.

The boundary is the safety net; the methods still validate their arguments first,
with messages that say what is expected.

Example:
    >>> class Thing(Guarded):
    ...     def size(self, n: int) -> int:
    ...         return list(range(n)).__len__()
    >>> Thing().size("3")
    Traceback (most recent call last):
    ...
    flowscope.errors.ValidationError: Thing.size(): invalid n='3': 'str' object cannot be interpreted as an integer
"""

from __future__ import annotations

import collections.abc as cabc
import functools
import inspect
import os
import types
import typing
from collections.abc import Callable, Iterator
from typing import Any, ClassVar, TypeVar

from . import _db
from .errors import ConfigurationError, FlowscopeError, ValidationError

__all__ = ["Guarded", "boundary", "to_flowscope_error"]

F = TypeVar("F", bound=Callable[..., Any])

_MARK = "__flowscope_boundary__"
_INPUT_ERRORS = (
    TypeError,
    ValueError,
    OverflowError,
    LookupError,
    AttributeError,
    ArithmeticError,
    RecursionError,
)


def to_flowscope_error(
    exc: Exception,
    where: str,
    fn: Callable[..., Any] | None = None,
    args: tuple[Any, ...] = (),
    kwargs: dict[str, Any] | None = None,
) -> FlowscopeError:
    """The flowscope error for an exception that escaped the public call ``where``.

    Example:
        >>> to_flowscope_error(FileNotFoundError(2, "No such file", "/x/y"), "export")
        ConfigurationError("export: cannot use the path '/x/y': No such file")
    """
    if isinstance(exc, FlowscopeError):
        return exc
    if _is_driver_error(exc):
        return _db.translate(exc)
    if isinstance(exc, OSError):
        paths = [p for p in (exc.filename, exc.filename2) if p is not None]
        reason = exc.strerror or str(exc) or type(exc).__name__
        if paths:
            named = " and ".join(repr(os.fsdecode(p)) for p in paths)
            return ConfigurationError(f"{where}: cannot use the path {named}: {reason}")
        return ConfigurationError(f"{where}: {reason}")
    if isinstance(exc, _INPUT_ERRORS):
        return _validation_error(exc, where, fn, args, dict(kwargs or {}))
    text = str(exc) or type(exc).__name__
    return FlowscopeError(f"{where} failed: {type(exc).__name__}: {text}")


def _is_driver_error(exc: BaseException) -> bool:
    from sqlalchemy import exc as sa_exc

    return isinstance(exc, sa_exc.SQLAlchemyError) or type(exc).__module__.startswith("psycopg")


def _validation_error(
    exc: BaseException,
    where: str,
    fn: Callable[..., Any] | None,
    args: tuple[Any, ...],
    kwargs: dict[str, Any],
) -> ValidationError:
    reason = str(exc) or type(exc).__name__
    if isinstance(exc, KeyError) and exc.args:
        reason = f"missing key {exc.args[0]!r}"
    given = _given(fn, args, kwargs)
    if given is None:  # the call itself did not fit the signature
        return ValidationError(f"{where}: {reason}", errors=[_entry((), reason)])
    suspects = {n: v for n, v in given.items() if not _fits(v, _annotation(fn, n))}
    named = suspects or given
    if not named:
        return ValidationError(f"{where}: {reason}", errors=[_entry((), reason)])
    shown = ", ".join(f"{n}={_short(v)}" for n, v in named.items())
    return ValidationError(
        f"{where}: invalid {shown}: {reason}", errors=[_entry((n,), reason) for n in named]
    )


def _entry(loc: tuple[str, ...], msg: str) -> dict[str, Any]:
    return {"loc": loc, "msg": msg, "index": None}


def _short(value: Any) -> str:
    try:
        text = repr(value)
    except Exception:  # a value whose repr fails
        text = f"<{type(value).__name__}>"
    return text if len(text) <= 60 else text[:57] + "..."


def _given(
    fn: Callable[..., Any] | None, args: tuple[Any, ...], kwargs: dict[str, Any]
) -> dict[str, Any] | None:
    """The arguments the caller passed, by parameter name (None: they do not fit)."""
    if fn is None:
        return {}
    try:
        bound = inspect.signature(fn).bind(*args, **kwargs)
    except TypeError:
        return None
    out: dict[str, Any] = {}
    for name, value in bound.arguments.items():
        if name == "self":
            continue
        kind = inspect.signature(fn).parameters[name].kind
        if kind is inspect.Parameter.VAR_KEYWORD:
            out.update(value)
        elif kind is inspect.Parameter.VAR_POSITIONAL:
            out.update({f"{name}[{i}]": v for i, v in enumerate(value)})
        else:
            out[name] = value
    return out


def _annotation(fn: Callable[..., Any] | None, name: str) -> Any:
    """The resolved annotation of a parameter, or Any when it cannot be resolved."""
    if fn is None:
        return Any
    base = name.split("[", 1)[0]
    param = inspect.signature(fn).parameters.get(base)
    if param is None or param.annotation is inspect.Parameter.empty:
        return Any
    hint = param.annotation
    if isinstance(hint, str):
        namespace = {**vars(typing), **vars(cabc), "os": os, **getattr(fn, "__globals__", {})}
        try:
            hint = eval(hint, namespace)
        except Exception:  # a TYPE_CHECKING-only name
            return Any
    if param.kind is inspect.Parameter.VAR_POSITIONAL and base != name:
        return hint
    if param.kind in (inspect.Parameter.VAR_POSITIONAL, inspect.Parameter.VAR_KEYWORD):
        return Any
    return hint


def _fits(value: Any, hint: Any) -> bool:
    """Whether a value fits an annotation (a lenient check, for naming culprits only)."""
    if hint is Any or isinstance(hint, TypeVar | typing.ForwardRef | str):
        return True
    if hint is None or hint is type(None):
        return value is None
    origin = typing.get_origin(hint)
    params = typing.get_args(hint)
    if origin is typing.Union or origin is types.UnionType:
        return any(_fits(value, h) for h in params)
    if origin is typing.Literal:
        return any(value == p and type(value) is type(p) for p in params)
    if origin is None:
        if not isinstance(hint, type):
            return True
        if hint is float:
            return isinstance(value, int | float) and not isinstance(value, bool)
        if hint is int:
            return isinstance(value, int) and not isinstance(value, bool)
        return isinstance(value, hint)
    if not isinstance(origin, type):
        return True
    if not isinstance(value, origin):
        return False
    if isinstance(value, str | bytes) and origin is not str:
        return origin in (cabc.Sequence,) and not params
    if isinstance(value, list | tuple | set | frozenset):  # (never consume an iterator)
        items: list[Any] = list(value)
        if origin is tuple and params and params[-1] is not Ellipsis:
            return len(items) == len(params) and all(
                _fits(v, h) for v, h in zip(items, params, strict=True)
            )
        inner = params[0] if params else Any
        return all(_fits(v, inner) for v in items[:50])
    return True


def boundary(fn: F, *, method: bool = False) -> F:
    """Wrap a public function: whatever escapes it comes out as a flowscope error.

    Example:
        >>> @boundary
        ... def half(n: int) -> int:
        ...     return n // 2
        >>> half(None)
        Traceback (most recent call last):
        ...
        flowscope.errors.ValidationError: half(): invalid n=None: unsupported operand type(s) for //: 'NoneType' and 'int'
    """
    if getattr(fn, _MARK, False):
        return fn

    def where(args: tuple[Any, ...]) -> str:
        if method and args:  # the class the caller used: Workflows.list(), not Resource.list()
            return f"{type(args[0]).__name__}.{fn.__name__}()"
        return f"{fn.__qualname__}()"

    flags: list[tuple[str, bool]] | None = None
    signature: inspect.Signature | None = None

    @functools.wraps(fn)
    def guarded(*args: Any, **kwargs: Any) -> Any:
        nonlocal flags, signature
        if flags is None:  # first call: the annotations are resolvable by now
            signature, flags = inspect.signature(fn), _flags(fn)
        if flags:
            assert signature is not None
            _check_flags(signature, flags, args, kwargs, where(args))
        try:
            result = fn(*args, **kwargs)
        except FlowscopeError:
            raise
        except Exception as exc:
            raise to_flowscope_error(exc, where(args), fn, args, kwargs) from exc
        if isinstance(result, types.GeneratorType):
            return _guard_iterator(result, where(args), fn, args, kwargs)
        return result

    setattr(guarded, _MARK, True)
    return typing.cast(F, guarded)


def _flags(fn: Callable[..., Any]) -> list[tuple[str, bool]]:
    """The parameters annotated ``bool`` (False) or ``bool | None`` (True)."""
    found = []
    for name in inspect.signature(fn).parameters:
        hint = _annotation(fn, name)
        if hint is bool:
            found.append((name, False))
        elif typing.get_origin(hint) in (typing.Union, types.UnionType) and set(
            typing.get_args(hint)
        ) == {bool, type(None)}:
            found.append((name, True))
    return found


def _is_bool(value: Any) -> bool:
    return isinstance(value, bool) or (
        type(value).__module__ == "numpy" and type(value).__name__ in ("bool", "bool_")
    )


def _check_flags(
    signature: inspect.Signature,
    flags: list[tuple[str, bool]],
    args: tuple[Any, ...],
    kwargs: dict[str, Any],
    where: str,
) -> None:
    """A flag is True or False (``"no"`` or a SQL clause would be truthy, and quietly wrong)."""
    try:
        given = signature.bind_partial(*args, **kwargs).arguments
    except TypeError:
        return  # the call itself fails, with its own message
    for name, optional in flags:
        if name not in given:
            continue
        value = given[name]
        if _is_bool(value) or (optional and value is None):
            continue
        expected = "True, False or None" if optional else "True or False"
        raise ValidationError(
            f"{where}: {name} must be {expected}, not {_short(value)}",
            errors=[_entry((name,), f"must be {expected}")],
        )


def _guard_iterator(
    it: Iterator[Any],
    name: str,
    fn: Callable[..., Any],
    args: tuple[Any, ...],
    kwargs: dict[str, Any],
) -> Iterator[Any]:
    try:
        yield from it
    except FlowscopeError:
        raise
    except Exception as exc:
        raise to_flowscope_error(exc, name, fn, args, kwargs) from exc


class Guarded:
    """A base class whose public methods (own and inherited) run inside :func:`boundary`.

    ``_unguarded`` names methods to leave alone (context managers that run the
    caller's own code).

    Example:
        >>> class Api(Guarded):
        ...     def ping(self) -> str:
        ...         return "pong"
        >>> Api.ping.__flowscope_boundary__
        True
    """

    _unguarded: ClassVar[frozenset[str]] = frozenset()

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        for name in dir(cls):
            if name.startswith("_") or name in cls._unguarded:
                continue
            attr = inspect.getattr_static(cls, name)
            if inspect.isfunction(attr) and not getattr(attr, _MARK, False):
                setattr(cls, name, boundary(attr, method=True))
