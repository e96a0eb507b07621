"""Blocking calls under the main thread's timer at 1 ms: no EINTR reaches the program.

SIGALRM interrupts the main thread's system calls a thousand times a second here (the timer kept
running while the main thread waits, which by default it does not); PEP 475 has CPython retry its
own calls after the handler ran, and C libraries (SQLite, OpenSSL) retry theirs.
The program makes the calls a service makes, each one blocked long enough for dozens of signals,
checks every result, and reports how many timer samples the agent counted meanwhile.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

from reliability.helpers import agent_env, frame_names, host_script, run_host

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="SIGALRM and ITIMER_REAL")

PROGRAM = r"""
import http.server, os, queue, select, selectors, signal, socket, sqlite3, ssl, subprocess, sys
import threading, time, urllib.request
import codeguru_agent
from codeguru_agent import profiler

from codeguru_agent.sampling.timer import main_thread_timer

WAIT_S = 0.05
CERT, KEY = sys.argv[1], sys.argv[2]
main_thread_timer().always_armed = True  # by default it stops while the main thread waits
agent = codeguru_agent.start()
agent.wait_for_sampling(10)

def later(action, delay_s=WAIT_S):
    thread = threading.Thread(target=lambda: (time.sleep(delay_s), action()))
    thread.start()
    return thread

results = {}
def check(name, call):
    results[name] = call()

check("sleep", lambda: time.sleep(WAIT_S) or "slept")

def pipe_read():
    r, w = os.pipe()
    later(lambda: os.write(w, b"pipe"))
    return os.read(r, 10).decode()
check("os.read", pipe_read)

def selecting(kind):
    r, w = os.pipe()
    later(lambda: os.write(w, b"x"))
    if kind == "select":
        return select.select([r], [], [])[0] == [r]
    if kind == "poll":
        poller = select.poll()
        poller.register(r, select.POLLIN)
        return poller.poll()[0][0] == r
    with selectors.DefaultSelector() as selector:
        selector.register(r, selectors.EVENT_READ)
        return len(selector.select()) == 1
for kind in ("select", "poll", "selector"):
    check(kind, lambda: selecting(kind))

def sockets():
    server = socket.create_server(("127.0.0.1", 0))
    port = server.getsockname()[1]
    def client():
        peer = socket.create_connection(("127.0.0.1", port))
        time.sleep(WAIT_S)
        peer.sendall(b"hello")
        got = b""
        while len(got) < 4_000_000:
            time.sleep(0.001)
            got += peer.recv(1 << 16)
        peer.close()
    later(client)
    conn, _ = server.accept()
    data = conn.recv(10)
    conn.sendall(b"x" * 4_000_000)  # blocks while the slow reader drains it
    conn.close()
    server.close()
    return data.decode()
check("socket", sockets)

def connect():
    server = socket.create_server(("127.0.0.1", 0))
    sock = socket.create_connection(server.getsockname())
    ok = sock.getpeername() == server.getsockname()
    sock.close(); server.close()
    return ok
check("connect", connect)

def tls():
    server_ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    server_ctx.load_cert_chain(CERT, KEY)
    client_ctx = ssl.create_default_context(cafile=CERT)
    a, b = socket.socketpair()
    def serve():
        with server_ctx.wrap_socket(a, server_side=True) as tls_server:
            time.sleep(WAIT_S)
            tls_server.sendall(b"secret")
            tls_server.recv(1)
    thread = later(serve, 0)
    with client_ctx.wrap_socket(b, server_hostname="localhost") as tls_client:
        data = tls_client.recv(10)
        tls_client.sendall(b".")
    thread.join()
    return data.decode()
check("ssl", tls)

def http_get():
    class Slow(http.server.BaseHTTPRequestHandler):
        def do_GET(self):
            time.sleep(WAIT_S)
            self.send_response(200); self.end_headers(); self.wfile.write(b"page")
        def log_message(self, *args):
            pass
    server = http.server.HTTPServer(("127.0.0.1", 0), Slow)
    thread = threading.Thread(target=server.handle_request); thread.start()
    with urllib.request.urlopen(f"http://127.0.0.1:{server.server_port}/") as answer:
        body = answer.read().decode()
    thread.join(); server.server_close()
    return body
check("urllib", http_get)

check("subprocess.run", lambda: subprocess.run(
    [sys.executable, "-c", "import time; time.sleep(0.1); print('child')"], capture_output=True, text=True
).stdout.strip())

def communicate():
    child = subprocess.Popen([sys.executable, "-c", "print(input()[::-1])"], stdin=subprocess.PIPE,
                             stdout=subprocess.PIPE, text=True)
    return child.communicate("olleh")[0].strip()
check("communicate", communicate)

def waitpid():
    child = subprocess.Popen(["sleep", "0.1"])
    return os.waitpid(child.pid, 0)[1]
check("os.waitpid", waitpid)
check("os.system", lambda: os.system("sleep 0.1"))

def sqlite():
    path = CERT + ".db"
    holder = sqlite3.connect(path, check_same_thread=False)
    holder.execute("create table t (x)"); holder.commit()
    holder.execute("begin exclusive")
    later(holder.commit, 0.1)
    # SQLite counts its busy wait in sleeps, and a signal cuts each sleep short: under a timer at
    # 1 ms that never stops, a timeout lasts about a hundredth of its time (see test_timer.py)
    writer = sqlite3.connect(path, timeout=60)
    writer.execute("insert into t values (1)"); writer.commit()
    return writer.execute("select count(*) from t").fetchone()[0]
check("sqlite3", sqlite)

def queue_get():
    items = queue.Queue()
    later(lambda: items.put("item"))
    try:
        items.get(timeout=WAIT_S / 2)
    except queue.Empty:
        empty = True
    return empty, items.get()
check("queue.get", queue_get)

def locks():
    lock = threading.Lock(); lock.acquire()
    later(lock.release)
    timed_out = not threading.Lock().acquire(True) or not lock.acquire(timeout=WAIT_S / 2)
    got = lock.acquire()
    return timed_out, got
check("Lock", locks)

def conditions():
    condition = threading.Condition()
    with condition:
        waited = condition.wait(WAIT_S / 2)
    event = threading.Event()
    later(event.set)
    return waited, event.wait(), threading.Event().wait(WAIT_S / 2)
check("Condition/Event", conditions)

def join():
    thread = later(lambda: None)
    thread.join()
    return thread.is_alive()
check("join", join)

interval = signal.getitimer(signal.ITIMER_REAL)[1]
live = profiler.active()._timer.live
codeguru_agent.stop()
print(json.dumps({"results": results, "interval": interval, "live": live}))
""".replace("json.dumps", "__import__('json').dumps")


def test_no_eintr_reaches_the_program_under_the_timer_at_1ms(tmp_path: Path) -> None:
    import subprocess

    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-subj", "/CN=localhost"]
        + ["-addext", "subjectAltName=DNS:localhost", "-keyout", str(key), "-out", str(cert)],
        check=True,
        capture_output=True,
    )
    env = agent_env(
        None, "Eintr", tmp_path, local_dir=str(tmp_path / "out"), sampling_interval_ms=1, cpu_limit_percent=100
    )
    result = run_host(host_script(tmp_path, PROGRAM), env, args=[str(cert), str(key)])
    assert result.returncode == 0, result.stderr
    assert "Traceback" not in result.stderr and "Interrupted" not in result.stderr, result.stderr
    report = json.loads(result.stdout)
    assert report["results"] == {
        "sleep": "slept",
        "os.read": "pipe",
        "select": True,
        "poll": True,
        "selector": True,
        "socket": "hello",
        "connect": True,
        "ssl": "secret",
        "urllib": "page",
        "subprocess.run": "child",
        "communicate": "hello",
        "os.waitpid": 0,
        "os.system": 0,
        "sqlite3": 1,
        "queue.get": [True, "item"],
        "Lock": [True, True],
        "Condition/Event": [False, True, False],
        "join": False,
    }
    assert report["live"] and report["interval"] < 0.0013, report  # the timer ran at 1 ms throughout
    documents = [json.loads(path.read_text()) for path in (tmp_path / "out").glob("profile-*.json")]
    assert sum(doc["debugInfo"]["genericMetrics"]["timerSamples"] for doc in documents) > 200
    # the timer's samples landed inside the blocking calls (the program's functions that make them)
    seen = {name.rsplit(":", 1)[-1] for document in documents for name in frame_names(document)}
    blocking = {"pipe_read", "selecting", "sockets", "tls", "http_get", "communicate", "waitpid", "sqlite", "locks"}
    assert blocking <= seen, blocking - seen
