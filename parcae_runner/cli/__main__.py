"""``python -m parcae_runner.cli``: the command line (as the ``parcae-runner`` script)."""

import sys

from parcae_runner.cli import main

sys.exit(main())
