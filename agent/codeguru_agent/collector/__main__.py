"""``python -m codeguru_agent.collector``: the same as ``codeguru-agent collector``."""

import sys

from codeguru_agent.cli.collector import main

sys.exit(main())
