"""``python -m snn``: the ``snn`` command line."""

from snn.cli import main

raise SystemExit(main())
