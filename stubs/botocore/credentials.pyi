class Credentials:
    access_key: str
    secret_key: str
    token: str | None
    def __init__(self, access_key: str, secret_key: str, token: str | None = ..., method: str | None = ...) -> None: ...
