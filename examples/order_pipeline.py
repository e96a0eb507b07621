"""An order-processing job to profile: ``python -m codeguru_agent --local out examples/order_pipeline.py``.

The main thread takes orders in (at a steady rate) and queues them; worker threads take them off the
queue and, for each one, ask a small inventory service on 127.0.0.1 whether the items are in stock
(a blocking HTTP call), price the order against the promotions (pure-Python CPU work), wait for the
payment gateway, then render, compress and sign the invoice (CPU work again). After a few seconds
it prints a summary. In the flame graph each of those steps is a frame named after its function.
"""

from __future__ import annotations

import argparse
import http.client
import json
import queue
import random
import statistics
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, HTTPServer
from typing import ClassVar, Dict, List, Optional, Tuple

CATALOG_SIZE = 400
PROMOTIONS = 60_000
INVENTORY_LOOKUP_S = 0.005
PAYMENT_WAIT_S = 0.015
PRODUCT_WORDS = (
    "steel",
    "bracket",
    "walnut",
    "cable",
    "sensor",
    "mount",
    "gasket",
    "valve",
    "oak",
    "copper",
    "hinge",
    "panel",
    "filter",
    "spring",
    "rotor",
    "clamp",
    "glass",
    "lever",
    "seal",
    "frame",
)
TERMS = (
    "payable within 30 days of delivery; goods remain the property of the seller until paid in full; "
    "returns accepted within 30 days in the original packaging."
)
REGIONS = {"EU": 0.20, "US": 0.07, "UK": 0.175, "JP": 0.10}


@dataclass(frozen=True)
class Item:
    sku: str
    quantity: int
    unit_price: float


@dataclass
class Order:
    order_id: int
    customer: str
    region: str
    items: Tuple[Item, ...]
    received_at: float = field(default_factory=time.monotonic)


@dataclass(frozen=True)
class Promotion:
    sku_prefix: str
    minimum_quantity: int
    percent_off: float


@dataclass(frozen=True)
class Receipt:
    order_id: int
    total: float
    backordered: bool
    invoice_bytes: int
    signature: str
    latency_s: float


# --- the inventory service: a tiny HTTP server on 127.0.0.1 -------------------------------------


class InventoryHandler(BaseHTTPRequestHandler):
    """GET /stock/<sku>,<sku>,... answers {sku: units available} after a database-like delay."""

    stock: ClassVar[Dict[str, int]] = {}

    def do_GET(self) -> None:
        skus = self.path.rsplit("/", 1)[-1].split(",")
        body = json.dumps(self.lookup_stock(skus)).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def lookup_stock(self, skus: List[str]) -> Dict[str, int]:
        time.sleep(INVENTORY_LOOKUP_S)  # stands for the database round trip
        return {sku: self.stock.get(sku, 0) for sku in skus}

    def log_message(self, format: str, *args: object) -> None:
        pass  # one line per request would drown the summary


def start_inventory_service(rng: random.Random) -> HTTPServer:
    InventoryHandler.stock = {f"SKU-{n:04d}": rng.randint(0, 50) for n in range(CATALOG_SIZE)}
    server = HTTPServer(("127.0.0.1", 0), InventoryHandler)
    threading.Thread(target=server.serve_forever, name="inventory-service", daemon=True).start()
    return server


class InventoryClient:
    """The service's client; it answers one request per connection, as HTTP/1.0 does."""

    def __init__(self, port: int) -> None:
        self._connection = http.client.HTTPConnection("127.0.0.1", port, timeout=5)

    def available(self, skus: List[str]) -> Dict[str, int]:
        self._connection.request("GET", "/stock/" + ",".join(skus))
        return json.loads(self._connection.getresponse().read())

    def close(self) -> None:
        self._connection.close()


# --- the work on each order ---------------------------------------------------------------------


class PaymentGateway:
    """A remote payment provider: authorising a card is a wait for its callback."""

    def __init__(self) -> None:
        self._callback = threading.Event()

    def authorize(self, order: Order, amount: float) -> bool:
        self._callback.wait(PAYMENT_WAIT_S)  # the provider answers by webhook, eventually
        return amount < 50_000


def check_inventory(order: Order, inventory: InventoryClient) -> bool:
    available = inventory.available([item.sku for item in order.items])
    return all(available[item.sku] >= item.quantity for item in order.items)


def price_order(order: Order, promotions: List[Promotion]) -> float:
    subtotal = sum(item.quantity * item.unit_price for item in order.items)
    discount = best_discount(order, promotions)
    return round(compute_tax(subtotal - discount, order.region), 2)


def best_discount(order: Order, promotions: List[Promotion]) -> float:
    """Try every promotion on every item and keep the best one per item."""
    total = 0.0
    for item in order.items:
        best = 0.0
        for promotion in promotions:
            if item.sku.startswith(promotion.sku_prefix) and item.quantity >= promotion.minimum_quantity:
                best = max(best, item.quantity * item.unit_price * promotion.percent_off / 100.0)
        total += best
    return total


def compute_tax(amount: float, region: str) -> float:
    rate = REGIONS[region]
    cents = int(amount * 100)
    for _ in range(2_000):  # rounding rules applied line by line, as accounting systems do
        cents = (cents * 10_007 + 5) // 10_007
    return cents / 100.0 * (1.0 + rate)


def render_invoice(order: Order, total: float) -> bytes:
    lines = [f"INVOICE {order.order_id:06d}", f"Bill to: {order.customer}, {order.region} office"]
    for line, item in enumerate(order.items, 1):
        number = int(item.sku[4:])
        words = [PRODUCT_WORDS[(number * 7 + k * 13) % len(PRODUCT_WORDS)] for k in range(5)]
        lines.append(
            f"{line:>3}. {item.sku} {' '.join(words)}: {item.quantity} x {item.unit_price:.2f} = "
            f"{item.quantity * item.unit_price:.2f} (batch {number * 7919 % 100_000:05d}, "
            f"lot {order.order_id * 104_729 % 1_000_000:06d})"
        )
    lines.append(f"Total due: {total:.2f}, {TERMS}")
    return "\n".join(lines).encode()


def compress_invoice(data: bytes, window: int = 255) -> bytes:
    """LZ77 in pure Python: (offset, length) for a repeat, else a run of literal bytes."""
    out = bytearray()
    literals = bytearray()
    position = 0
    while position < len(data):
        best_length = best_offset = 0
        for start in range(max(0, position - window), position):
            length = 0
            while length < 255 and position + length < len(data) and data[start + length] == data[position + length]:
                length += 1
            if length > best_length:
                best_length, best_offset = length, position - start
        if best_length >= 4 or len(literals) == 255 or position + 1 == len(data):
            if best_length < 4:
                literals.append(data[position])
                position += 1
            out += bytes((0, len(literals))) + literals
            literals.clear()
            if best_length >= 4:
                out += bytes((1, best_offset, best_length))
                position += best_length
        else:
            literals.append(data[position])
            position += 1
    return bytes(out)


def sign_invoice(data: bytes, key: bytes, rounds: int = 160) -> str:
    """A keyed FNV-1a digest, rounds times over: the shape of an HMAC, in pure Python."""
    digest = 0xCBF29CE484222325
    for _ in range(rounds):
        for byte in key + data:
            digest = ((digest ^ byte) * 0x100000001B3) & 0xFFFFFFFFFFFFFFFF
    return f"{digest:016x}"


def process_order(
    order: Order, inventory: InventoryClient, gateway: PaymentGateway, promotions: List[Promotion]
) -> Receipt:
    available = check_inventory(order, inventory)
    total = price_order(order, promotions)
    gateway.authorize(order, total)
    invoice = compress_invoice(render_invoice(order, total))
    signature = sign_invoice(invoice, key=b"order-pipeline-demo")
    return Receipt(order.order_id, total, not available, len(invoice), signature, time.monotonic() - order.received_at)


def worker_loop(
    orders: queue.Queue[Optional[Order]], receipts: List[Receipt], port: int, promotions: List[Promotion]
) -> None:
    inventory = InventoryClient(port)
    gateway = PaymentGateway()
    try:
        while True:
            order = orders.get()
            if order is None:
                return
            receipts.append(process_order(order, inventory, gateway, promotions))
    finally:
        inventory.close()


# --- the job ------------------------------------------------------------------------------------


def take_orders(orders: queue.Queue[Optional[Order]], rng: random.Random, seconds: float, per_second: float) -> int:
    """Queue orders as they arrive until time is up; returns how many."""
    deadline = time.monotonic() + seconds
    count = 0
    while time.monotonic() < deadline:
        time.sleep(rng.expovariate(per_second))
        count += 1
        items = tuple(
            Item(f"SKU-{rng.randrange(CATALOG_SIZE):04d}", rng.randint(1, 12), round(rng.uniform(2.0, 400.0), 2))
            for _ in range(rng.randint(1, 4))
        )
        orders.put(Order(count, f"customer-{rng.randrange(1000):03d}", rng.choice(list(REGIONS)), items))
    return count


def make_promotions(rng: random.Random) -> List[Promotion]:
    return [
        Promotion(f"SKU-{rng.randrange(CATALOG_SIZE // 10):03d}", rng.randint(1, 6), rng.choice((5, 10, 15, 25)))
        for _ in range(PROMOTIONS)
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workers", type=int, default=3)
    parser.add_argument("--seconds", type=float, default=6.0, help="how long orders keep coming")
    parser.add_argument("--rate", type=float, default=24.0, help="orders per second")
    parser.add_argument("--seed", type=int, default=7)
    options = parser.parse_args()

    rng = random.Random(options.seed)
    server = start_inventory_service(rng)
    promotions = make_promotions(rng)
    orders: queue.Queue[Optional[Order]] = queue.Queue(maxsize=4 * options.workers)
    receipts: List[Receipt] = []
    workers = [
        threading.Thread(
            target=worker_loop,
            name=f"order-worker-{n + 1}",
            args=(orders, receipts, server.server_address[1], promotions),
        )
        for n in range(options.workers)
    ]
    started = time.monotonic()
    for worker in workers:
        worker.start()
    taken = take_orders(orders, rng, options.seconds, options.rate)
    for _ in workers:
        orders.put(None)
    for worker in workers:
        worker.join()
    elapsed = time.monotonic() - started
    server.shutdown()

    latencies_ms = sorted(receipt.latency_s * 1000 for receipt in receipts)
    print(f"processed {len(receipts)} of {taken} orders in {elapsed:.1f} s with {options.workers} workers")
    print(
        f"  revenue {sum(r.total for r in receipts):,.2f}, {sum(r.backordered for r in receipts)} backordered, "
        f"invoices {sum(r.invoice_bytes for r in receipts) / 1024:.0f} KiB compressed"
    )
    print(
        f"  latency median {statistics.median(latencies_ms):.0f} ms, "
        f"p95 {latencies_ms[int(len(latencies_ms) * 0.95)]:.0f} ms"
    )


if __name__ == "__main__":
    main()
