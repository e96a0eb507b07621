"""GET /profilingGroups/{name}/flamegraph.html: the merged range as a flame graph page."""

from __future__ import annotations

import json
import urllib.error
import urllib.request

import pytest

from support.documents import START_MS, profile_document


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
