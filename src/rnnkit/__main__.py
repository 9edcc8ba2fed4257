"""``python -m rnnkit`` runs the ``rnnkit`` command (and ``torchrun -m rnnkit``)."""

from rnnkit.cli.main import main

raise SystemExit(main())
