"""An aiohttp server whose handlers await a slow backend (a TCP server on the same loop).

Prints its port, serves until ``/quit``. ``/checkout`` awaits one backend call; ``/dashboard``
gathers three.
"""

from __future__ import annotations

import asyncio
import sys

from aiohttp import web

BACKEND_PAUSE_S = 0.05


async def answer_slowly(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    await reader.readexactly(1)
    await asyncio.sleep(BACKEND_PAUSE_S)
    writer.write(b"k")
    await writer.drain()
    writer.close()


async def query_backend(port: int) -> bytes:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(b"q")
    await writer.drain()
    data = await reader.readexactly(1)
    writer.close()
    return data


async def fetch_user(port: int) -> bytes:
    return await query_backend(port)


async def fetch_orders(port: int) -> bytes:
    return await query_backend(port)


async def fetch_prices(port: int) -> bytes:
    return await query_backend(port)


async def handle_checkout(request: web.Request) -> web.Response:
    await query_backend(request.app["backend_port"])
    return web.Response(text="ok")


async def handle_dashboard(request: web.Request) -> web.Response:
    port = request.app["backend_port"]
    await asyncio.gather(fetch_user(port), fetch_orders(port), fetch_prices(port))
    return web.Response(text="ok")


async def main() -> None:
    backend = await asyncio.start_server(answer_slowly, "127.0.0.1", 0)
    quit_requested = asyncio.Event()

    async def handle_quit(_request: web.Request) -> web.Response:
        quit_requested.set()
        return web.Response(text="bye")

    app = web.Application()
    app["backend_port"] = backend.sockets[0].getsockname()[1]
    app.router.add_get("/checkout", handle_checkout)
    app.router.add_get("/dashboard", handle_dashboard)
    app.router.add_get("/quit", handle_quit)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    print(runner.addresses[0][1], flush=True)
    await quit_requested.wait()
    await runner.cleanup()
    backend.close()


if __name__ == "__main__":
    asyncio.run(main())
    sys.exit(0)
