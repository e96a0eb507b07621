from typing import Any, MutableMapping

class AWSRequest:
    headers: MutableMapping[str, str]
    context: dict[str, Any]
    def __init__(self, method: str | None = ..., url: str | None = ..., data: bytes | None = ...) -> None: ...
