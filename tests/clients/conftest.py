"""Shared fixtures of the client tests: where the service is (tools/client-tests.sh starts it)."""
import os

import pytest


def _env(name):
    value = os.environ.get(name)
    if not value:
        pytest.fail(f"{name} is not set: run these tests through tools/client-tests.sh")
    return value


@pytest.fixture(scope="session")
def url():
    """The service's base URL, e.g. http://127.0.0.1:8080 (no trailing slash)."""
    return _env("DARKROOM_URL").rstrip("/")


@pytest.fixture(scope="session")
def token():
    """An API token of a tenant."""
    return _env("DARKROOM_TOKEN")


@pytest.fixture(scope="session")
def model():
    """The catalog id of the model a worker serves (the tiny model)."""
    return _env("DARKROOM_MODEL")
