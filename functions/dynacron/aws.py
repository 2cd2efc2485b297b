"""boto3 clients built from Settings (endpoint, region, local credentials)."""

from __future__ import annotations

from typing import Any

from .settings import Settings
from .store import _is_loopback, _local_credentials


def client_kwargs(settings: Settings) -> dict[str, Any]:
    kwargs: dict[str, Any] = {"region_name": settings.region}
    if settings.endpoint_url:
        kwargs["endpoint_url"] = settings.endpoint_url
        if _is_loopback(settings.endpoint_url):
            key, secret = _local_credentials()
            kwargs.update(aws_access_key_id=key, aws_secret_access_key=secret)
    return kwargs


def sqs_client(settings: Settings) -> Any:
    import boto3
    from botocore.config import Config

    retries = {"mode": "standard", "max_attempts": 1 + settings.max_retries}
    config = Config(retries=retries, max_pool_connections=32)
    return boto3.client("sqs", config=config, **client_kwargs(settings))
