"""EC2: the instance's identity from the instance metadata service, IMDSv2 only.

A session token is taken with ``PUT /latest/api/token`` and sent on every metadata request; the
official agent asks for the token with GET, which IMDSv2 refuses, so it never identifies an instance
(its issue #47). The endpoint and the switch to turn IMDS off are read from the same environment
variables as boto3's, when the lookup runs.
"""

from __future__ import annotations

import logging
from typing import Dict, Final, Mapping, Optional

from codeguru_agent.fleet import FleetIdentity
from codeguru_agent.fleet._http import CONNECT_TIMEOUT_S, TOTAL_TIMEOUT_S, MetadataClient, MetadataError, text_value

logger = logging.getLogger(__name__)

DISABLED_ENV: Final = "AWS_EC2_METADATA_DISABLED"
ENDPOINT_ENV: Final = "AWS_EC2_METADATA_SERVICE_ENDPOINT"
ENDPOINT_MODE_ENV: Final = "AWS_EC2_METADATA_SERVICE_ENDPOINT_MODE"
IPV4_ENDPOINT: Final = "http://169.254.169.254"
IPV6_ENDPOINT: Final = "http://[fd00:ec2::254]"
TOKEN_PATH: Final = "/latest/api/token"
TOKEN_TTL_HEADER: Final = "X-aws-ec2-metadata-token-ttl-seconds"
TOKEN_HEADER: Final = "X-aws-ec2-metadata-token"
TOKEN_TTL_S: Final = 21600
METADATA_PATH: Final = "/latest/meta-data/"
COMPUTE_TYPE: Final = "aws_ec2_instance"


def endpoint(environ: Mapping[str, str]) -> Optional[str]:
    """The IMDS base URL as boto3 chooses it, or None when IMDS is turned off."""
    if environ.get(DISABLED_ENV, "false").lower() == "true":
        return None
    custom = environ.get(ENDPOINT_ENV)
    if custom:
        return custom
    if environ.get(ENDPOINT_MODE_ENV, "").lower() == "ipv6":
        return IPV6_ENDPOINT
    return IPV4_ENDPOINT


def lookup(
    environ: Mapping[str, str],
    *,
    connect_timeout_s: float = CONNECT_TIMEOUT_S,
    total_timeout_s: float = TOTAL_TIMEOUT_S,
) -> Optional[FleetIdentity]:
    """This instance's identity; None if IMDS is turned off, MetadataError if it does not answer.

    The instance id is required; the host name and type are added when IMDS gives them in time.
    """
    base_url = endpoint(environ)
    if base_url is None:
        logger.debug("EC2 instance metadata is turned off by %s", DISABLED_ENV)
        return None
    client = MetadataClient(base_url, connect_timeout_s=connect_timeout_s, total_timeout_s=total_timeout_s)
    token = text_value(
        client.request(TOKEN_PATH, method="PUT", headers={TOKEN_TTL_HEADER: str(TOKEN_TTL_S)}),
        "the IMDSv2 token",
        max_chars=4096,
    )
    headers = {TOKEN_HEADER: token}

    def read(name: str) -> str:
        return text_value(client.request(METADATA_PATH + name, headers=headers), name)

    instance_id = read("instance-id")
    info: Dict[str, str] = {"computeType": COMPUTE_TYPE}
    for key, name in (("hostName", "local-hostname"), ("hostType", "instance-type")):
        try:
            info[key] = read(name)
        except MetadataError as error:
            logger.debug("EC2 instance %s: no %s (%s)", instance_id, name, error)
    return FleetIdentity(instance_id, info)
