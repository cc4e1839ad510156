"""``python -m irlens`` is the ``irlens`` command."""

from irlens.cli import main

main()
