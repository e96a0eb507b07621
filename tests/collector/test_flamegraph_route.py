"""The collector's pages: the index of groups, a group's page with its picker and comparison, and the exports."""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from typing import Any, Tuple

import pytest

from support.documents import START_MS, profile_document
from support.flamegraph_page import embedded_data, frames


def test_the_page_shows_the_merged_profiles_of_the_range(collector):
    collector.create_group("orders")
    for offset_ms in (0, 60_000):
        collector.client().post_agent_profile(
            profilingGroupName="orders",
            agentProfile=json.dumps(profile_document(START_MS + offset_ms)),
            contentType="application/json",
        )
    query = f"startTime={START_MS // 1000}&endTime={START_MS // 1000 + 300}"

    with urllib.request.urlopen(
        f"{collector.url}/profilingGroups/orders/flamegraph.html?{query}", timeout=30
    ) as response:
        page = response.read().decode()
        content_type = response.headers["Content-Type"]

    assert content_type == "text/html; charset=utf-8"
    assert "app.work:run" in page
    assert "2 profiles, 10 samples, 2023-11-14T22:00:00.000Z to 2023-11-14T22:02:00.000Z" in page


def test_an_unknown_group_has_no_page(collector):
    with pytest.raises(urllib.error.HTTPError) as raised:
        urllib.request.urlopen(f"{collector.url}/profilingGroups/ghost/flamegraph.html", timeout=30)

    assert raised.value.code == 404


def post(collector: Any, group: str, start_ms: int, stacks: Any) -> None:
    collector.client().post_agent_profile(
        profilingGroupName=group,
        agentProfile=json.dumps(profile_document(start_ms, stacks=stacks)),
        contentType="application/json",
    )


def fetch(url: str) -> Tuple[bytes, Any]:
    with urllib.request.urlopen(url, timeout=30) as response:
        return response.read(), response.headers


def test_the_index_lists_groups_with_their_latest_profile(collector: Any) -> None:
    collector.create_group("orders")
    collector.create_group("billing")
    post(collector, "orders", START_MS, None)
    post(collector, "orders", START_MS + 60_000, None)

    body, headers = fetch(f"{collector.url}/")

    page = body.decode()
    assert headers["Content-Type"] == "text/html; charset=utf-8"
    assert '<a href="/profilingGroups/orders/flamegraph.html?period=PT1H">orders</a>' in page
    assert "2023-11-14T22:01:00.000Z" in page and "no profiles yet" in page


def test_the_page_carries_the_picker_and_download_links(collector: Any) -> None:
    collector.create_group("orders")
    post(collector, "orders", START_MS, None)
    query = f"startTime={START_MS // 1000}&endTime={START_MS // 1000 + 300}"

    body, _ = fetch(f"{collector.url}/profilingGroups/orders/flamegraph.html?{query}")

    data = embedded_data(body.decode())
    assert data["collector"]["group"] == "orders" and data["collector"]["groups"] == ["orders"]
    assert (data["collector"]["startMs"], data["collector"]["endMs"]) == (START_MS, START_MS + 300_000), (
        "the range asked for"
    )
    labels = [item["label"] for item in data["exports"]]
    assert labels == ["collapsed stacks", "speedscope", "pprof"]
    collapsed, headers = fetch(collector.url + data["exports"][0]["href"])
    assert collapsed == b"app.main:<module>;app.work:run 5\n"
    assert headers["Content-Disposition"] == 'attachment; filename="orders-2023-11-14T22-00-00.collapsed.txt"'


def test_a_baseline_range_makes_the_page_a_comparison(collector: Any) -> None:
    collector.create_group("orders")
    post(collector, "orders", START_MS, {(("app:main", 1), ("app:old", 2)): 4})
    post(collector, "orders", START_MS + 3_600_000, {(("app:main", 1), ("app:new", 2)): 6})
    hour = START_MS // 1000
    query = f"startTime={hour + 3600}&endTime={hour + 7200}&compareStartTime={hour}&compareEndTime={hour + 3600}"

    body, _ = fetch(f"{collector.url}/profilingGroups/orders/flamegraph.html?{query}")

    page = body.decode()
    drawn = frames(page)
    assert embedded_data(page)["kind"] == "comparison"
    assert drawn[("app:main", "app:new")]["total"] == 6 and drawn[("app:main", "app:old")]["total"] == 0
    assert "compared with the baseline 1 profile, 4 samples" in page


def test_an_empty_range_is_an_empty_page_with_its_picker(collector: Any) -> None:
    collector.create_group("orders")

    body, _ = fetch(f"{collector.url}/profilingGroups/orders/flamegraph.html?period=PT1H")

    page = body.decode()
    assert '<body class="empty">' in page
    assert embedded_data(page)["collector"]["period"] == "PT1H"


def test_an_unknown_export_format_is_refused(collector: Any) -> None:
    collector.create_group("orders")
    post(collector, "orders", START_MS, None)

    with pytest.raises(urllib.error.HTTPError) as raised:
        fetch(f"{collector.url}/profilingGroups/orders/export?format=svg&period=PT1H")

    assert raised.value.code == 400 and b"format must be one of collapsed, speedscope, pprof" in raised.value.read()
