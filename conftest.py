"""Every pytest run in this repository (tests, doctests, notebooks) leaves the user's data alone.

For the whole session ``FLOWSCOPE_DATA_DIR`` names a throwaway data directory
(:func:`flowscope.temporary_data_dir`, under the temporary folder): a ``client.mirror()``
without a path, or an embedded ``flowscope.connect()`` without a URL, writes there instead
of ``~/.local/share/flowscope``. Notebook kernels and CLI subprocesses inherit it. It is
removed when the session ends, or by the supervisor of an embedded server started in it
once that server stops. ``.ci/leftovers.py`` checks, against a clean ``HOME``, that
nothing reached the user's data directory or stayed in the temporary folder.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import Any

_ENV = "FLOWSCOPE_DATA_DIR"
_state: dict[str, Any] = {}


def pytest_configure(config: Any) -> None:
    import flowscope

    path = flowscope.temporary_data_dir(prefix="flowscope-session-")
    _state.update(previous=os.environ.get(_ENV), path=path)
    os.environ[_ENV] = str(path)


def pytest_unconfigure(config: Any) -> None:
    if "path" not in _state:
        return
    path: Path = _state.pop("path")
    previous = _state.pop("previous")
    if previous is None:
        os.environ.pop(_ENV, None)
    else:
        os.environ[_ENV] = previous
    if not (path / "pgdata").exists():  # else its server's supervisor removes it when it stops
        shutil.rmtree(path, ignore_errors=True)
