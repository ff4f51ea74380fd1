"""``python -m server.cli``: the same as the ``llmgw`` script (``llmgw serve --workers N``
starts its worker processes this way)."""

from server.cli import main

raise SystemExit(main())
