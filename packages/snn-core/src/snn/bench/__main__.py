"""``python -m snn.bench``: the same as ``snn bench``."""

from snn.bench.command import main

raise SystemExit(main())
