"""The agent's version, declared once: the distribution's (pyproject.toml reads it from here), the
package's ``__version__``, and the agentMetadata each profile reports. Nothing to import."""

from typing import Final

VERSION: Final = "0.1.0"
