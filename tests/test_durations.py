"""One duration syntax for the SDK and the CLI: pandas offset aliases (flowscope._durations)."""

from __future__ import annotations

import warnings
from datetime import timedelta

import flowscope
import pandas as pd
import pytest
from flowscope._durations import Frequency, parse_duration, parse_frequency
from pandas.tseries.frequencies import to_offset

# every accepted duration, and what it is
DURATIONS = {
    "45s": timedelta(seconds=45),
    "30min": timedelta(minutes=30),
    "12h": timedelta(hours=12),
    "7D": timedelta(days=7),
    "7d": timedelta(days=7),
    "2W": timedelta(weeks=2),
    "2w": timedelta(weeks=2),
    "D": timedelta(days=1),
    " 90 D ": timedelta(days=90),
    "3652425D": timedelta(days=3_652_425),  # 10,000 years: the longest
}
# every accepted frequency, and how many of which unit
FREQUENCIES = {
    "15min": (15, "mins"),
    "1h": (1, "hours"),
    "6h": (6, "hours"),
    "1D": (1, "days"),
    "2d": (2, "days"),
    "h": (1, "hours"),
    "1W": (1, "weeks"),
    "1w": (1, "weeks"),
    "W-MON": (1, "weeks"),
    "2W-MON": (2, "weeks"),
    "1MS": (1, "months"),
    "3MS": (3, "months"),
}


@pytest.mark.parametrize(("text", "expected"), DURATIONS.items())
def test_accepted_durations(text: str, expected: timedelta) -> None:
    assert parse_duration(text) == expected
    assert type(parse_duration(text)) is timedelta


@pytest.mark.parametrize("text", ["45s", "30min", "12h", "7D", "2W", " 90 D "])
def test_durations_mean_what_pandas_means(text: str) -> None:
    """The canonical spellings are pandas' own: Timedelta reads them alike, warning-free
    (``d``/``w`` are accepted too, which pandas 3 deprecates; ``D`` alone is one day, as
    in pandas' offsets)."""
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert pd.Timedelta(text.replace(" ", "")) == parse_duration(text)


@pytest.mark.parametrize(("text", "expected"), FREQUENCIES.items())
def test_accepted_frequencies(text: str, expected: tuple[int, str]) -> None:
    assert parse_frequency(text) == Frequency(*expected, text)
    if text[-1] not in "dw":  # pandas' offsets read the canonical spellings, warning-free
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            assert to_offset(text).n == expected[0]


def test_timedeltas_pass_through() -> None:
    assert parse_duration(timedelta(hours=3)) == timedelta(hours=3)
    converted = parse_duration(pd.Timedelta("90D"))
    assert converted == timedelta(days=90) and type(converted) is timedelta
    for bad in (timedelta(0), timedelta(days=-1), timedelta.max):
        with pytest.raises(flowscope.ValidationError):
            parse_duration(bad)


# the spellings flowscope accepted before: each fails naming the new one
OLD_DURATIONS = {
    "30M": "'30M' is ambiguous: flowscope uses pandas offsets now, where 'M' is a month end;"
    " for 30 minutes write '30min'",
    "30m": "for 30 minutes write '30min'",
    "1M": "for 1 minute write '1min'",
    "12H": "'12H' is an old spelling: flowscope uses pandas offsets now; for 12 hours write '12h'",
    "45S": "for 45 seconds write '45s'",
    "15T": "for 15 minutes write '15min'",
}
OLD_FREQUENCIES = {
    "30M": "for 30 minutes write '30min'; for calendar months '30MS'",
    "1H": "for 1 hour write '1h'",
    "15T": "for 15 minutes write '15min'",
    "1ME": "buckets are labelled by their start: write '1MS'",
    "1Y": "write '12MS'",
    "1QS": "write '3MS'",
}


@pytest.mark.parametrize(("text", "message"), OLD_DURATIONS.items())
def test_old_duration_spellings_name_the_new_one(text: str, message: str) -> None:
    with pytest.raises(flowscope.ValidationError, match="^older_than=") as caught:
        parse_duration(text)
    assert message in str(caught.value)
    assert caught.value.errors[0]["loc"] == ("older_than",)


@pytest.mark.parametrize(("text", "message"), OLD_FREQUENCIES.items())
def test_old_frequency_spellings_name_the_new_one(text: str, message: str) -> None:
    with pytest.raises(flowscope.ValidationError, match="^freq=") as caught:
        parse_frequency(text)
    assert message in str(caught.value)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("1MS", "is a calendar offset, not a fixed length (months and years vary); write days or"
         " weeks, e.g. '30D'"),
        ("3MS", "e.g. '90D'"),
        ("1ME", "calendar offset"),
        ("1Y", "e.g. '365D'"),
        ("W-MON", "write e.g. '45s', '30min', '12h', '7D' or '2W'"),
        ("90 days", "is not a pandas offset alias: write '90D'"),
        ("1h30min", "is not a duration flowscope understands"),
        ("-1D", "is not a duration flowscope understands"),
        ("0D", "must be a positive length"),
        ("99999999999D", "is too long: at most 10,000 years"),
        ("3652426D", "is too long"),
        ("soon", "is not a duration"),
    ],
)  # fmt: skip
def test_durations_are_fixed_lengths(text: str, message: str) -> None:
    """A month is not a fixed length: durations refuse calendar offsets, naming days."""
    with pytest.raises(flowscope.ValidationError) as caught:
        parse_duration(text, name="period")
    assert str(caught.value).startswith(f"period={text!r} ") and message in str(caught.value)


@pytest.mark.parametrize("text", ["30s", "1 fortnight", "0h", "999999999W", "D1", 5, None])
def test_frequencies_refused(text: object) -> None:
    with pytest.raises(flowscope.ValidationError, match="^freq="):
        parse_frequency(text)  # type: ignore[arg-type]


def test_the_sdk_parses_every_duration_and_frequency_here(client: flowscope.Client) -> None:
    """analytics (freq, period) and retention (older_than) give the same errors, before
    touching the database."""
    with pytest.raises(flowscope.ValidationError, match="for 1 hour write '1h'"):
        client.analytics.status_breakdown(freq="1H")
    with pytest.raises(flowscope.ValidationError, match="for 30 minutes write '30min'"):
        client.analytics.throughput(freq="30T")
    with pytest.raises(flowscope.ValidationError, match="^period='1MS' is a calendar offset"):
        client.analytics.compare(period="1MS")
    with pytest.raises(flowscope.ValidationError, match="^older_than='30M' is ambiguous"):
        client.retention.prune(older_than="30M", archive_to="/nonexistent/never-created")
    same = client.analytics.compare(period="168h", until="2026-06-30")
    pd.testing.assert_frame_equal(same, client.analytics.compare(period="1W", until="2026-06-30"))
