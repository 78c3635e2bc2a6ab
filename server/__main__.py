"""``python -m adaptrank.server ...`` runs the ``adaptrank`` command line (e.g. ``serve --transport stdio``)."""

from adaptrank.server.cli import main

main()
