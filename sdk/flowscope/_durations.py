"""Durations and frequencies: one syntax for the SDK and the CLI, pandas' offset aliases.

A duration or a frequency is a whole number and a unit, as in pandas
(``pd.Timedelta("12h")``, ``df.resample("15min")``); the number may be left out (``"D"``
is one day), spaces around it are ignored, and case matters, as it does in pandas:

- ``s`` seconds (durations only; the finest frequency is ``1min``), ``min`` minutes,
  ``h`` hours, ``D`` days (``d`` too), ``W`` weeks (``w`` too): fixed lengths, accepted
  by both. As a frequency, ``W`` (or ``W-MON``) buckets start on Mondays at 00:00 UTC.
- ``MS`` calendar months, labelled by their first day: frequencies only. A month is not a
  fixed length (28 to 31 days), so durations (``older_than=``, ``period=``) refuse it,
  like ``ME`` and years: an age of about three months is written ``"90D"`` (or ``"13W"``).

The spellings flowscope accepted before, and pandas no longer does, are refused with an
error naming the new one: ``M``/``m`` (minutes in retention, a month end in pandas:
``"30min"``), ``H`` (``"12h"``), ``T`` (``"15min"``), ``S`` (``"45s"``); so are ``ME``
and years as frequencies (buckets are labelled by their start: ``"1MS"``, ``"12MS"``).

Example:
    >>> parse_duration("12h")
    datetime.timedelta(seconds=43200)
    >>> parse_frequency("15min")
    Frequency(n=15, unit='mins', text='15min')
    >>> parse_duration("30M")
    Traceback (most recent call last):
    ...
    flowscope.errors.ValidationError: older_than='30M' is ambiguous: flowscope uses pandas offsets now, where 'M' is a month end; for 30 minutes write '30min'
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from .errors import ValidationError

__all__ = ["MAX_DAYS", "Frequency", "parse_duration", "parse_frequency"]

#: The longest duration or frequency accepted: 10,000 years.
MAX_DAYS = 3_652_425
_SYNTAX = re.compile(r"^\s*(\d*)\s*([A-Za-z][A-Za-z-]*)\s*$")
# unit → (name as in PostgreSQL's make_interval, length in days; None: calendar)
_UNITS: dict[str, tuple[str, float | None]] = {
    "s": ("secs", 1 / 86_400),
    "min": ("mins", 1 / 1_440),
    "h": ("hours", 1 / 24),
    "D": ("days", 1),
    "d": ("days", 1),
    "W": ("weeks", 7),
    "w": ("weeks", 7),
    "W-MON": ("weeks", 7),
    "MS": ("months", None),
}
# spelled-out units (pandas' Timedelta reads them, its offsets do not)
_WORDS = {
    "sec": "s",
    "second": "s",
    "min": "min",
    "minute": "min",
    "hour": "h",
    "day": "D",
    "week": "W",
}
_DURATION_UNITS = ("s", "min", "h", "D", "d", "W", "w")
_FREQUENCY_UNITS = ("min", "h", "D", "d", "W", "w", "W-MON", "MS")
_DURATION_EXAMPLES = "'45s', '30min', '12h', '7D' or '2W'"
_FREQUENCY_EXAMPLES = (
    "'15min', '1h', '1D', '1W' (weeks starting Monday) or '1MS' (calendar months), in UTC"
)


@dataclass(frozen=True)
class Frequency:
    """A parsed frequency: ``n`` times ``unit`` (``mins``, ``hours``, ``days``, ``weeks``
    or ``months``, the names of PostgreSQL's ``make_interval``); ``text`` as written."""

    n: int
    unit: str
    text: str


def _instead(unit: str, n: int, allowed: tuple[str, ...]) -> str | None:
    """What to write instead of ``n`` ``unit``: an old spelling, or a calendar unit where a
    fixed length is needed (None: nothing to suggest)."""
    if unit in ("M", "m"):
        calendar = f"; for calendar months '{n}MS'" if "MS" in allowed else ""
        return (
            "is ambiguous: flowscope uses pandas offsets now, where 'M' is a month end;"
            f" for {n} minute{'s' * (n != 1)} write '{n}min'{calendar}"
        )
    old = {"H": ("hour", "h"), "T": ("minute", "min"), "S": ("second", "s")}
    if unit in old:
        what, new = old[unit]
        return (
            "is an old spelling: flowscope uses pandas offsets now;"
            f" for {n} {what}{'s' * (n != 1)} write '{n}{new}'"
        )
    word = _WORDS.get(unit.lower().removesuffix("s"))
    if word is not None and word in allowed:
        return f"is not a pandas offset alias: write '{n}{word}'"
    months = {"M": 1, "Q": 3, "Y": 12, "A": 12}.get(unit[:1]) if unit.isupper() else None
    if months is None:
        return None
    if "MS" in allowed:
        return (
            "is not a supported frequency; buckets are labelled by their start:"
            f" write '{n * months}MS'"
        )
    return (
        "is a calendar offset, not a fixed length (months and years vary);"
        f" write days or weeks, e.g. '{n * (365 if months == 12 else 30 * months)}D'"
    )


def _parse(value: Any, name: str, allowed: tuple[str, ...]) -> tuple[int, str]:
    """``(n, unit)`` of ``value``, or the ValidationError that says what to write."""
    frequency = "MS" in allowed
    examples = _FREQUENCY_EXAMPLES if frequency else _DURATION_EXAMPLES
    kind = "a supported frequency" if frequency else "a duration flowscope understands"

    def refuse(message: str) -> ValidationError:
        return ValidationError(
            f"{name}={value!r} {message}", errors=[{"loc": (name,), "msg": message, "index": None}]
        )

    match = _SYNTAX.match(value) if isinstance(value, str) else None
    if match is None:
        raise refuse(f"is not {kind}; write e.g. {examples}")
    n, unit = int(match.group(1) or 1), match.group(2)
    if unit not in allowed:
        instead = _instead(unit, n, allowed)
        if instead is None and unit == "s":
            instead = "is finer than the finest frequency, minutes: write e.g. '1min'"
        raise refuse(instead or f"is not {kind} (unit {unit!r}); write e.g. {examples}")
    if n == 0:
        raise refuse("must be a positive length")
    if n * (_UNITS[unit][1] or 31) > MAX_DAYS or n > 2**31 - 1:
        raise refuse("is too long: at most 10,000 years")
    return n, unit


def parse_frequency(value: str, *, name: str = "freq") -> Frequency:
    """Parse a time-bucket frequency: ``"15min"``, ``"1h"``, ``"1D"``, ``"1W"`` (weeks from
    Monday), ``"1MS"`` (calendar months).

    Raises ``ValidationError`` naming ``name`` for anything else, and for the old
    spellings with the new one (``"15T"`` → ``"15min"``, ``"1H"`` → ``"1h"``).

    Example:
        >>> parse_frequency("1W")
        Frequency(n=1, unit='weeks', text='1W')
        >>> parse_frequency("3MS")
        Frequency(n=3, unit='months', text='3MS')
        >>> parse_frequency("1H")
        Traceback (most recent call last):
        ...
        flowscope.errors.ValidationError: freq='1H' is an old spelling: flowscope uses pandas offsets now; for 1 hour write '1h'
    """
    n, unit = _parse(value, name, _FREQUENCY_UNITS)
    return Frequency(n, _UNITS[unit][0], value)


def parse_duration(value: str | timedelta, *, name: str = "older_than") -> timedelta:
    """Parse a fixed length: ``"45s"``, ``"30min"``, ``"12h"``, ``"7D"``, ``"2W"``, or a
    positive ``timedelta`` (``pd.Timedelta`` too), returned as a ``timedelta``.

    Calendar offsets (``"1MS"``, ``"1ME"``, years) are refused: a month is not a fixed
    length. Raises ``ValidationError`` naming ``name``.

    Example:
        >>> parse_duration("7D")
        datetime.timedelta(days=7)
        >>> parse_duration("2W") == parse_duration("14d")
        True
        >>> parse_duration("3MS")
        Traceback (most recent call last):
        ...
        flowscope.errors.ValidationError: older_than='3MS' is a calendar offset, not a fixed length (months and years vary); write days or weeks, e.g. '90D'
    """
    if isinstance(value, timedelta):
        if value <= timedelta(0):
            raise ValidationError(
                f"{name} must be a positive length, not {value}",
                errors=[{"loc": (name,), "msg": "must be positive", "index": None}],
            )
        if value > timedelta(days=MAX_DAYS):
            raise ValidationError(
                f"{name}={value} is too long: at most 10,000 years",
                errors=[{"loc": (name,), "msg": "longer than 10,000 years", "index": None}],
            )
        return timedelta(days=value.days, seconds=value.seconds, microseconds=value.microseconds)
    n, unit = _parse(value, name, _DURATION_UNITS)
    return timedelta(**{_UNITS[unit][0].replace("mins", "minutes").replace("secs", "seconds"): n})
