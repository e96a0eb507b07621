"""SigV4: with keys configured, every API request must be signed with them; loopback is the default."""

from __future__ import annotations

import http.client
import json
import re
import time
from urllib.parse import urlsplit

import boto3
import pytest
from botocore import UNSIGNED
from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.config import Config
from botocore.credentials import Credentials
from botocore.exceptions import ClientError

from codeguru_agent.cli import collector as cli
from codeguru_agent.collector.server import CollectorError, CollectorOptions, CollectorServer
from support.collector_client import CollectorHandle
from support.documents import profile_document

ACCESS_KEY, SECRET_KEY = "AKIDCOLLECTOR", "collector-secret"


@pytest.fixture
def signed(tmp_path):
    """A collector that requires signatures made with ACCESS_KEY and SECRET_KEY."""
    options = CollectorOptions(
        db_path=str(tmp_path / "db"), test_hooks=True, access_key=ACCESS_KEY, secret_key=SECRET_KEY
    )
    with CollectorServer(options) as server:
        yield CollectorHandle(server.url)


def client(url, access_key=ACCESS_KEY, secret_key=SECRET_KEY, **config):
    return boto3.client(
        "codeguruprofiler",
        endpoint_url=url,
        region_name="eu-west-1",
        aws_access_key_id=access_key,
        aws_secret_access_key=secret_key,
        config=Config(retries={"mode": "standard", "total_max_attempts": 1}, **config),
    )


def refusal(call):
    with pytest.raises(ClientError) as raised:
        call()
    response = raised.value.response
    assert response["ResponseMetadata"]["HTTPStatusCode"] == 403
    return response["Error"]["Code"], response["Error"]["Message"]


def test_the_right_keys_work_for_every_kind_of_request(signed):
    right = client(signed.url)

    group = right.create_profiling_group(profilingGroupName="orders", tags={"a b": "c/d"})["profilingGroup"]
    right.post_agent_profile(
        profilingGroupName="orders", agentProfile=json.dumps(profile_document()), contentType="application/json"
    )
    right.get_profile(profilingGroupName="orders", period="P1D", accept="application/json")

    assert group["arn"].startswith("arn:aws:codeguru-profiler:eu-west-1:")
    assert len(signed.profiles("orders")) == 1


def test_a_wrong_secret_is_refused(signed):
    wrong = client(signed.url, secret_key="guess")

    code, message = refusal(lambda: wrong.create_profiling_group(profilingGroupName="orders"))

    assert code == "InvalidSignatureException"
    assert "signature we calculated does not match" in message
    assert signed.requests("CreateProfilingGroup")[0]["status"] == 403


def test_an_unknown_access_key_is_refused(signed):
    code, message = refusal(lambda: client(signed.url, access_key="AKIDOTHER").list_profiling_groups())

    assert code == "UnrecognizedClientException"
    assert "access key id" in message


def test_an_unsigned_request_is_refused(signed):
    code, message = refusal(lambda: client(signed.url, signature_version=UNSIGNED).list_profiling_groups())

    assert code == "AccessDeniedException"
    assert "not signed" in message


def signed_request(url, body, amz_date, method="POST", path="/profilingGroups/orders/agentProfile?profileToken=t-1"):
    """A request signed by botocore's SigV4Auth at the given X-Amz-Date (a PostAgentProfile by default)."""
    headers = {"X-Amz-Date": amz_date}
    if body is not None:
        headers["Content-Type"] = "application/json"
    request = AWSRequest(method=method, url=url + path, data=body, headers=headers)
    request.context["timestamp"] = amz_date
    signer = SigV4Auth(Credentials(ACCESS_KEY, SECRET_KEY), "codeguru-profiler", "us-east-1")
    signature = signer.signature(signer.string_to_sign(request, signer.canonical_request(request)), request)
    signed_headers = signer.signed_headers(signer.headers_to_sign(request))
    request.headers["Authorization"] = (
        f"AWS4-HMAC-SHA256 Credential={ACCESS_KEY}/{amz_date[:8]}/us-east-1/codeguru-profiler/aws4_request, "
        f"SignedHeaders={signed_headers}, Signature={signature}"
    )
    return request


def send(url, request, body):
    connection = http.client.HTTPConnection(urlsplit(url).netloc, timeout=10)
    try:
        connection.request(request.method, request.url[len(url) :], body=body, headers=dict(request.headers.items()))
        response = connection.getresponse()
        return response.status, response.getheader("x-amzn-ErrorType"), response.read()
    finally:
        connection.close()


def test_a_body_changed_after_signing_is_refused(signed):
    client(signed.url).create_profiling_group(profilingGroupName="orders")
    body = json.dumps(profile_document()).encode()
    now = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())

    assert send(signed.url, signed_request(signed.url, body, now), body)[0] == 204
    tampered = body.replace(b'"WALL_TIME": 5', b'"WALL_TIME": 9')
    status, code, _ = send(signed.url, signed_request(signed.url, body, now), tampered)

    assert (status, code) == (403, "InvalidSignatureException")
    assert [profile["document"] for profile in signed.profiles("orders")] == [json.loads(body)]


def test_an_old_signature_is_refused(signed):
    body = b"{}"
    an_hour_ago = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime(time.time() - 3600))

    status, code, answer = send(signed.url, signed_request(signed.url, body, an_hour_ago), body)

    assert (status, code) == (403, "InvalidSignatureException")
    assert b"Signature expired" in answer


def test_a_non_loopback_address_needs_keys():
    with pytest.raises(CollectorError, match=r"refusing to listen on 0\.0\.0\.0.*--access-key and --secret-key"):
        CollectorServer(CollectorOptions(host="0.0.0.0"))
    with pytest.raises(CollectorError, match="only allowed on a loopback address"):
        CollectorServer(CollectorOptions(host="0.0.0.0", access_key="a", secret_key="b", test_hooks=True))


def test_with_keys_any_address_serves_signed_requests_only():
    options = CollectorOptions(host="0.0.0.0", port=0, db_path=":memory:", access_key=ACCESS_KEY, secret_key=SECRET_KEY)
    with CollectorServer(options) as server:
        url = server.url.replace("0.0.0.0", "127.0.0.1")
        client(url).create_profiling_group(profilingGroupName="orders")

        assert client(url).list_profiling_groups()["profilingGroupNames"] == ["orders"]
        code, _ = refusal(lambda: client(url, signature_version=UNSIGNED).list_profiling_groups())
        assert code == "AccessDeniedException"


def test_ipv6_loopback_needs_no_keys():
    with CollectorServer(CollectorOptions(host="::1", port=0, db_path=":memory:")) as server:
        assert re.fullmatch(r"http://\[::1\]:\d+", server.url)
        client(server.url, signature_version=UNSIGNED).create_profiling_group(profilingGroupName="orders")

        assert client(server.url).describe_profiling_group(profilingGroupName="orders")["profilingGroup"]["name"] == (
            "orders"
        )


def test_the_flame_graph_page_needs_a_signature_when_keys_are_set(signed):
    client(signed.url).create_profiling_group(profilingGroupName="orders")
    client(signed.url).post_agent_profile(
        profilingGroupName="orders", agentProfile=json.dumps(profile_document()), contentType="application/json"
    )
    page = "/profilingGroups/orders/flamegraph.html?period=P1D"
    now = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())

    status, code, _ = send(signed.url, AWSRequest(method="GET", url=signed.url + page), None)
    assert (status, code) == (403, "AccessDeniedException")
    status, _, html = send(signed.url, signed_request(signed.url, None, now, method="GET", path=page), None)
    assert status == 200 and b"app.work:run" in html


def test_the_command_line_refuses_a_non_loopback_address_without_keys(capsys):
    assert cli.main(["--host", "10.1.2.3", "--db", ":memory:"]) == 2

    assert "refusing to listen on 10.1.2.3" in capsys.readouterr().err
