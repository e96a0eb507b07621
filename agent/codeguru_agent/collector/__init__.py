"""A local server speaking the CodeGuru Profiler API: validate, store in SQLite, merge, render.

Start it with ``codeguru-agent collector`` or, in tests, with
:class:`codeguru_agent.collector.server.CollectorServer`. It imports nothing of the agent's runtime,
only the shared document model, encoding and flame graph modules.
"""
