"""``python -m codeguru_agent [options] (script.py | -m module) [args...]``: ``codeguru-agent run``."""

import sys

from codeguru_agent.cli.run import main

if __name__ == "__main__":
    sys.exit(main(sys.argv[1:], prog="python -m codeguru_agent"))
