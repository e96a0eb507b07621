"""``python -m codeguru_agent.cli``: the same as the ``codeguru-agent`` console script."""

import sys

from codeguru_agent.cli import main

sys.exit(main())
