"""GetProfile merges the stored profiles of a time range; ListProfileTimes lists where they are."""

from __future__ import annotations

import datetime
import json

import pytest

from codeguru_agent.reporting.encoding import decode
from support.documents import START_MS, profile_document

MINUTE_MS = 60_000


def at(ms):
    return datetime.datetime.fromtimestamp(ms / 1000, tz=datetime.timezone.utc)


@pytest.fixture
def orders(collector):
    """A group with two profiles a minute apart that share frames but saw different lines."""
    collector.create_group("orders")
    client = collector.client()
    first = profile_document(START_MS, stacks={(("app.main:<module>", 1), ("app.work:run", 3)): 5})
    second = profile_document(
        START_MS + MINUTE_MS,
        stacks={(("app.main:<module>", 1), ("app.work:run", 7)): 2, (("app.main:<module>", 1), ("app.io:read", 9)): 4},
    )
    for document in (first, second):
        client.post_agent_profile(
            profilingGroupName="orders", agentProfile=json.dumps(document), contentType="application/json"
        )
    return collector


def get_json(collector, **kwargs):
    answer = collector.client().get_profile(profilingGroupName="orders", accept="application/json", **kwargs)
    assert answer["ResponseMetadata"]["HTTPStatusCode"] == 200
    assert answer["contentType"] == "application/json"
    return json.loads(answer["profile"].read())


def test_profiles_in_the_range_are_merged(orders):
    document = get_json(orders, startTime=at(START_MS), endTime=at(START_MS + 5 * MINUTE_MS))

    main = document["callgraph"]["children"]["app.main:<module>"]
    assert main["children"]["app.work:run"]["counts"] == {"WALL_TIME": 7}
    assert main["children"]["app.work:run"]["line"] == [3, 7]
    assert main["children"]["app.io:read"]["counts"] == {"WALL_TIME": 4}
    assert (document["start"], document["end"]) == (START_MS, START_MS + 2 * MINUTE_MS)
    assert document["agentMetadata"]["numTimesSampled"] == 11


def test_only_overlapping_profiles_are_merged(orders):
    document = get_json(orders, startTime=at(START_MS + 90_000), period="PT1M")

    main = document["callgraph"]["children"]["app.main:<module>"]
    assert main["children"]["app.work:run"]["counts"] == {"WALL_TIME": 2}


def test_ion_is_the_default_format(orders):
    answer = orders.client().get_profile(profilingGroupName="orders", period="PT1H")

    assert answer["contentType"] == "application/x-amzn-ion"
    assert decode(answer["profile"].read(), answer["contentType"]) == get_json(orders, period="PT1H")


def test_period_alone_is_the_latest_period(orders):
    late = profile_document(START_MS + 60 * MINUTE_MS, stacks={(("app.late:job", 1),): 1})
    orders.client().post_agent_profile(
        profilingGroupName="orders", agentProfile=json.dumps(late), contentType="application/json"
    )

    latest = get_json(orders, period="PT5M")
    day = get_json(orders, period="P1D")

    assert list(latest["callgraph"]["children"]) == ["app.late:job"]
    assert sorted(day["callgraph"]["children"]) == ["app.late:job", "app.main:<module>"]


def test_max_depth_trims_and_keeps_every_sample(orders):
    document = get_json(orders, period="PT1H", maxDepth=1)

    assert document["callgraph"]["children"] == {
        "app.main:<module>": {"counts": {"WALL_TIME": 11}, "file": "/srv/app.main.py", "line": [1]}
    }


@pytest.mark.parametrize(
    "arguments, message",
    [
        ({"startTime": at(START_MS), "endTime": at(START_MS + 1), "period": "PT5M"}, "not all three"),
        ({"startTime": at(START_MS)}, "endTime or period (with startTime) is required"),
        ({"endTime": at(START_MS)}, "startTime or period (with endTime) is required"),
        ({"startTime": at(START_MS), "endTime": at(START_MS - 1)}, "endTime must be after startTime"),
        ({"startTime": at(START_MS), "period": "P8D"}, "must not be longer than 7 days"),
        ({"period": "five minutes"}, "period must be an ISO 8601 duration"),
        ({"period": "PT5M", "accept": "text/html"}, "unsupported Accept 'text/html'"),
    ],
)
def test_bad_ranges_are_validation_errors(orders, arguments, message):
    client = orders.client(max_attempts=1)

    with pytest.raises(client.exceptions.ValidationException) as raised:
        client.get_profile(profilingGroupName="orders", **arguments)

    assert raised.value.response["ResponseMetadata"]["HTTPStatusCode"] == 400
    assert message in raised.value.response["Error"]["Message"]


def test_an_empty_range_is_not_found(orders):
    client = orders.client()

    with pytest.raises(client.exceptions.ResourceNotFoundException) as raised:
        client.get_profile(profilingGroupName="orders", startTime=at(0), period="PT5M")

    assert "no profiles of group 'orders' between 1970-01-01T00:00:00.000Z" in raised.value.response["Error"]["Message"]


def test_an_unknown_group_is_not_found(collector):
    client = collector.client()

    with pytest.raises(client.exceptions.ResourceNotFoundException):
        client.get_profile(profilingGroupName="ghost", period="PT5M")


@pytest.fixture
def spread(collector):
    """A group with profiles in three different 5-minute periods of one hour."""
    collector.create_group("orders")
    for offset_min in (0, 6, 7, 31):
        document = profile_document(START_MS + offset_min * MINUTE_MS, START_MS + offset_min * MINUTE_MS + 1_000)
        collector.client().post_agent_profile(
            profilingGroupName="orders", agentProfile=json.dumps(document), contentType="application/json"
        )
    return collector


def profile_times(collector, **kwargs):
    arguments = dict(
        profilingGroupName="orders", startTime=at(START_MS), endTime=at(START_MS + 60 * MINUTE_MS), period="PT5M"
    )
    arguments.update(kwargs)
    return collector.client().list_profile_times(**arguments)


def test_profile_times_are_the_periods_that_hold_profiles(spread):
    answer = profile_times(spread, orderBy="TimestampAscending")

    assert [time["start"] for time in answer["profileTimes"]] == [at(START_MS + m * MINUTE_MS) for m in (0, 5, 30)]
    assert "nextToken" not in answer
    hourly = profile_times(spread, period="PT1H")
    assert [time["start"] for time in hourly["profileTimes"]] == [at(START_MS)]


def test_profile_times_page_in_either_order(spread):
    first = profile_times(spread, maxResults=2)
    second = profile_times(spread, maxResults=2, nextToken=first["nextToken"])

    assert [time["start"] for time in first["profileTimes"] + second["profileTimes"]] == [
        at(START_MS + m * MINUTE_MS) for m in (30, 5, 0)
    ]
    assert "nextToken" not in second


def test_the_paginator_walks_every_page(spread):
    paginator = spread.client().get_paginator("list_profile_times")
    pages = paginator.paginate(
        profilingGroupName="orders",
        startTime=at(START_MS),
        endTime=at(START_MS + 60 * MINUTE_MS),
        period="PT5M",
        orderBy="TimestampAscending",
        PaginationConfig={"PageSize": 1},
    )

    assert [time["start"] for page in pages for time in page["profileTimes"]] == [
        at(START_MS + m * MINUTE_MS) for m in (0, 5, 30)
    ]


@pytest.mark.parametrize(
    "arguments, message",
    [
        ({"period": "PT10M"}, "period must be one of PT5M, PT1H, P1D"),
        ({"orderBy": "Random"}, "orderBy must be"),
        ({"endTime": at(START_MS)}, "endTime must be after startTime"),
    ],
)
def test_bad_profile_times_requests_are_validation_errors(spread, arguments, message):
    with pytest.raises(spread.client().exceptions.ValidationException) as raised:
        profile_times(spread, **arguments)

    assert message in raised.value.response["Error"]["Message"]
