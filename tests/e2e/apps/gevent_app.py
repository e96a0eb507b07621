"""A Flask app for ``gunicorn -k gevent``: each request waits on a slow backend over a socket."""

from __future__ import annotations

import os
import socket

from flask import Flask

app = Flask(__name__)


def query_backend() -> bytes:
    """One round trip to the backend, which answers after a pause: the greenlet waits on the socket."""
    with socket.create_connection(("127.0.0.1", int(os.environ["BACKEND_PORT"])), timeout=10) as connection:
        connection.sendall(b"q")
        return connection.recv(16)


@app.route("/slow")
def slow() -> str:
    return f"{query_backend().decode()} {os.getpid()}"
