"""A Flask app for the pre-forking server test: the agent starts when this module is imported,
in gunicorn's master with ``--preload`` (workers are forked from it), else in each worker."""

from __future__ import annotations

import os

from flask import Flask

import codeguru_agent

codeguru_agent.start()
app = Flask(__name__)


@app.route("/work/<int:n>")
def work(n: int) -> str:
    """Some CPU work, answered with its result and the worker's pid."""
    return f"{sum(i * i for i in range(n))} {os.getpid()}"
