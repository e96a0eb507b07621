"""EC2 identity over IMDSv2, against a local IMDS that enforces the token flow."""

from __future__ import annotations

import socket
import urllib.error
import urllib.request
from types import SimpleNamespace

import pytest

from codeguru_agent.fleet import StaticProvider, _http, detect, ec2
from codeguru_agent.fleet._http import MetadataError
from codeguru_agent.fleet.default import DefaultProvider
from fleet.conftest import FakeImds, LocalServer


def on_ec2(url: str) -> dict:
    return {ec2.ENDPOINT_ENV: url}


def test_identity_is_the_instance_id_with_host_name_and_type(imds):
    identity = ec2.lookup(on_ec2(imds.url))

    assert identity is not None
    assert identity.fleet_instance_id == "i-0123456789abcdef0"
    assert identity.fleet_info == {
        "computeType": "aws_ec2_instance",
        "hostName": "ip-10-0-1-23.us-west-2.compute.internal",
        "hostType": "m5.large",
    }
    assert identity.configure_agent_metadata == {}


def test_token_is_taken_with_put_and_sent_on_every_metadata_request(imds):
    ec2.lookup(on_ec2(imds.url))

    token_request, *metadata_requests = imds.requests
    assert (token_request.method, token_request.path) == ("PUT", "/latest/api/token")
    assert token_request.headers["x-aws-ec2-metadata-token-ttl-seconds"] == "21600"
    assert imds.fake.tokens == [imds.fake.tokens[0]]
    assert sorted(r.path for r in metadata_requests) == [
        "/latest/meta-data/instance-id",
        "/latest/meta-data/instance-type",
        "/latest/meta-data/local-hostname",
    ]
    for request in metadata_requests:
        assert request.method == "GET"
        assert request.headers["x-aws-ec2-metadata-token"] == imds.fake.tokens[0]


def test_local_imds_refuses_the_official_agents_flow(imds):
    """The fake has teeth: a GET for the token and a tokenless metadata request both fail."""
    for path, status in (("/latest/api/token", 405), ("/latest/meta-data/instance-id", 401)):
        request = urllib.request.Request(imds.url + path, headers={"X-aws-ec2-metadata-token-ttl-seconds": "21600"})
        with pytest.raises(urllib.error.HTTPError) as raised:
            urllib.request.build_opener(urllib.request.ProxyHandler({})).open(request, timeout=10)
        raised.value.close()
        assert raised.value.code == status


def test_detect_returns_the_ec2_identity(imds):
    provider = detect(on_ec2(imds.url + "/"))

    assert isinstance(provider, StaticProvider)
    assert provider.identity().fleet_instance_id == "i-0123456789abcdef0"
    assert provider.identity() is provider.identity()


def test_missing_host_details_are_left_out(imds):
    del imds.fake.metadata["local-hostname"]

    identity = ec2.lookup(on_ec2(imds.url))

    assert identity is not None
    assert identity.fleet_info == {"computeType": "aws_ec2_instance", "hostType": "m5.large"}


def test_no_instance_id_is_no_ec2_identity(imds):
    del imds.fake.metadata["instance-id"]

    with pytest.raises(MetadataError, match="instance-id"):
        ec2.lookup(on_ec2(imds.url))
    assert isinstance(detect(on_ec2(imds.url)), DefaultProvider)


@pytest.mark.parametrize("value", ["true", "TRUE", "True"])
def test_disabled_imds_is_never_asked(imds, value):
    env = {ec2.ENDPOINT_ENV: imds.url, ec2.DISABLED_ENV: value}

    assert ec2.lookup(env) is None
    assert isinstance(detect(env), DefaultProvider)
    assert imds.requests == []


@pytest.mark.timeout(30)
def test_an_endpoint_that_never_answers_falls_back_to_the_default(silent_endpoint):
    with pytest.raises(MetadataError):
        ec2.lookup(on_ec2(silent_endpoint))
    assert isinstance(detect(on_ec2(silent_endpoint)), DefaultProvider)


@pytest.mark.timeout(30)
def test_a_refused_connection_falls_back_to_the_default(refusing_endpoint):
    assert isinstance(detect(on_ec2(refusing_endpoint)), DefaultProvider)


@pytest.mark.parametrize("url", ["file:///etc/hostname", "ftp://127.0.0.1/", "not a url", "http://"])
def test_an_endpoint_that_is_not_http_is_never_opened(url):
    with pytest.raises(MetadataError, match="not an http or https URL"):
        ec2.lookup(on_ec2(url))
    assert isinstance(detect(on_ec2(url)), DefaultProvider)


@pytest.mark.parametrize(
    "env, expected",
    [
        ({}, "http://169.254.169.254"),
        ({ec2.DISABLED_ENV: "false"}, "http://169.254.169.254"),
        ({ec2.ENDPOINT_MODE_ENV: "IPv6"}, "http://[fd00:ec2::254]"),
        ({ec2.ENDPOINT_MODE_ENV: "IPv6", ec2.ENDPOINT_ENV: "http://127.0.0.1:8080"}, "http://127.0.0.1:8080"),
        ({ec2.DISABLED_ENV: "true", ec2.ENDPOINT_ENV: "http://127.0.0.1:8080"}, None),
    ],
)
def test_endpoint_is_chosen_as_boto3_chooses_it(env, expected):
    assert ec2.endpoint(env) == expected


def test_the_lookup_shares_one_second_among_all_its_requests(monkeypatch):
    """On a fake clock that moves 0.6 s with each answer, the second answer uses up the second: no
    third request is made, and the identity goes without the details that did not come in time."""
    now = [0.0]
    fake = FakeImds()

    def slow(method, path, headers):
        now[0] += 0.6
        return fake(method, path, headers)

    monkeypatch.setattr(_http, "time", SimpleNamespace(monotonic=lambda: now[0]))
    with LocalServer(slow) as server:
        identity = ec2.lookup(on_ec2(server.url))

    assert [(seen.method, seen.path) for seen in server.requests] == [
        ("PUT", "/latest/api/token"),
        ("GET", "/latest/meta-data/instance-id"),
    ]
    assert identity.fleet_instance_id == "i-0123456789abcdef0"
    assert "hostName" not in identity.fleet_info and "hostType" not in identity.fleet_info


def test_connecting_waits_at_most_0_3_seconds(imds, monkeypatch):
    timeouts = []
    connect = socket.create_connection

    def recording(address, timeout=None, *args, **kwargs):
        timeouts.append(timeout)
        return connect(address, timeout, *args, **kwargs)

    monkeypatch.setattr(socket, "create_connection", recording)
    ec2.lookup(on_ec2(imds.url))

    assert len(timeouts) == 4 and all(0 < timeout <= 0.3 for timeout in timeouts), timeouts


def test_metadata_requests_never_go_through_an_http_proxy(imds, monkeypatch):
    with LocalServer(lambda method, path, headers: (502, b"")) as proxy:
        for name in ("HTTP_PROXY", "http_proxy", "HTTPS_PROXY", "https_proxy", "ALL_PROXY", "all_proxy"):
            monkeypatch.setenv(name, proxy.url)
        for name in ("NO_PROXY", "no_proxy"):
            monkeypatch.delenv(name, raising=False)
        assert urllib.request.getproxies()["http"] == proxy.url  # what a proxy-aware client would use

        identity = ec2.lookup(on_ec2(imds.url))

    assert identity.fleet_instance_id == "i-0123456789abcdef0"
    assert proxy.requests == [] and len(imds.requests) == 4
