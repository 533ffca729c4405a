"""``python -m mercato``: the ``mercato`` command."""

from mercato.cli import main

main()
