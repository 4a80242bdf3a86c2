"""Apache Iceberg tables of the rows a client may read, kept in step with the database.

:meth:`flowscope.Client.lake` returns a :class:`Lake`: tables ``executions`` and
``workflows`` in a pyiceberg catalog (the user's, or a SQL catalog on a SQLite file beside
a local warehouse), partitioned by month of ``created_at``, with the export's faithful
types (JSON as its text, decimals, tz-aware UTC timestamps). Each ``sync()`` commits the
inserts, updates and deletes since the last one (the change feed of
:mod:`flowscope._changes`) atomically per table, and records its provenance in the
snapshot's summary; ``as_of=`` reads a past sync. Needs ``pip install 'flowscope[lake]'``.
"""

from __future__ import annotations

from ._lake import Lake

__all__ = ["Lake"]
