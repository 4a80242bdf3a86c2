"""``python -m flowscope.cli``: the ``flowscope`` command."""

from . import main

main()
