"""``python -m captum_cfx``: the same as the ``captum-cfx`` command."""

from captum_cfx.cli import main

raise SystemExit(main())
