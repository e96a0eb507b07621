from typing import Any

class Config:
    def __init__(
        self,
        *,
        retries: dict[str, Any] | None = ...,
        connect_timeout: float | None = ...,
        read_timeout: float | None = ...,
        user_agent_extra: str | None = ...,
    ) -> None: ...
