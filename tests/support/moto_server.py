"""A real S3 endpoint for tests: moto's server on a loopback port, spoken to over HTTP.

Tests go through botocore's real HTTP stack (and `requests` for presigned URLs) rather
than an in-process mock, so signing, Range headers and multipart behave as with MinIO.

Use from a conftest or a test module:

    @pytest.fixture(scope="session")
    def s3_endpoint() -> Iterator[str]:
        yield from moto_endpoint()
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import boto3
from botocore.config import Config
from moto.server import ThreadedMotoServer

# Dummy credentials and a region so boto3 never looks for real ones; the config files
# point nowhere so a developer's ~/.aws cannot change what the tests do.
TEST_AWS_ENV = {
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
    "AWS_SESSION_TOKEN": "testing",
    "AWS_DEFAULT_REGION": "us-east-1",
    "AWS_CONFIG_FILE": os.devnull,
    "AWS_SHARED_CREDENTIALS_FILE": os.devnull,
}
_UNSET_ENV = ("AWS_PROFILE", "AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL_S3")


@dataclass(frozen=True)
class MotoServer:
    endpoint_url: str
    server: ThreadedMotoServer

    def stop(self) -> None:
        self.server.stop()


def start_moto_server() -> MotoServer:
    """Start moto's S3 server on 127.0.0.1 and a free port the OS picks."""
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    return MotoServer(endpoint_url=f"http://{host}:{port}", server=server)


@contextmanager
def aws_test_env() -> Iterator[None]:
    """Set TEST_AWS_ENV (and keep loopback off any proxy); restore everything after."""
    saved = {name: os.environ.get(name) for name in (*TEST_AWS_ENV, *_UNSET_ENV, "NO_PROXY")}
    try:
        os.environ.update(TEST_AWS_ENV)
        for name in _UNSET_ENV:
            os.environ.pop(name, None)
        no_proxy = os.environ.get("NO_PROXY", "")
        os.environ["NO_PROXY"] = ",".join(filter(None, [no_proxy, "127.0.0.1", "localhost"]))
        yield
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


def moto_endpoint() -> Iterator[str]:
    """Fixture body: dummy AWS credentials, a running moto server; yields its URL."""
    with aws_test_env():
        server = start_moto_server()
        try:
            yield server.endpoint_url
        finally:
            server.stop()


def s3_client(endpoint_url: str) -> Any:
    """A boto3 S3 client for `endpoint_url`, configured as S3Storage configures its own."""
    return boto3.session.Session().client(
        "s3",
        endpoint_url=endpoint_url,
        region_name=TEST_AWS_ENV["AWS_DEFAULT_REGION"],
        config=Config(s3={"addressing_style": "path"}),
    )


def create_bucket(endpoint_url: str, name: str | None = None) -> str:
    """Create a bucket (a fresh, unique one unless `name` is given); return its name."""
    bucket = name or f"test-{uuid.uuid4().hex}"
    s3_client(endpoint_url).create_bucket(Bucket=bucket)
    return bucket


def delete_bucket(endpoint_url: str, bucket: str) -> None:
    """Empty and remove `bucket`, so a long session does not keep every blob in memory."""
    client = s3_client(endpoint_url)
    paginator = client.get_paginator("list_objects_v2")
    for page in paginator.paginate(Bucket=bucket):
        keys = [{"Key": item["Key"]} for item in page.get("Contents", [])]
        if keys:
            client.delete_objects(Bucket=bucket, Delete={"Objects": keys})
    client.delete_bucket(Bucket=bucket)
