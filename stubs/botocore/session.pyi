from typing import Any

from botocore.config import Config
from botocore.credentials import Credentials

class Session:
    def __init__(self, *, profile: str | None = ...) -> None: ...
    def get_config_variable(self, logical_name: str) -> Any: ...
    def get_credentials(self) -> Credentials | None: ...
    # A client's operations are generated at run time from the service model: typed as Any.
    def create_client(
        self,
        service_name: str,
        region_name: str | None = ...,
        endpoint_url: str | None = ...,
        config: Config | None = ...,
    ) -> Any: ...
