import pytest
from workbench.agent.runtimes import base_image
from workbench.agent.runtimes.base_image import (
    BOOTSTRAP_TAG,
    DEFAULT_BASE_IMAGE,
    BaseImageError,
    resolve_base_image,
)

from tests.support.real_parts import require_docker

pytestmark = pytest.mark.docker


@pytest.fixture
def client():  # type: ignore[no-untyped-def]
    require_docker()
    import docker

    client = docker.from_env()
    yield client
    client.close()


@pytest.fixture
def local_tag(client):  # type: ignore[no-untyped-def]
    """A tiny local image made from an empty tar, removed afterwards."""
    import io
    import tarfile

    data = io.BytesIO()
    with tarfile.open(fileobj=data, mode="w"):
        pass
    tag = "workbench-test/base-probe:1"
    client.api.import_image_from_data(data.getvalue(), repository=tag)
    yield tag
    client.images.remove(tag, force=True)


def test_local_image_is_used_as_is(client, local_tag) -> None:  # type: ignore[no-untyped-def]
    assert resolve_base_image(client, local_tag) == (local_tag, None)


def test_unpullable_image_says_what_to_do(client) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(BaseImageError) as caught:
        resolve_base_image(client, "workbench-test/never-published:0", pull_timeout=30)
    message = str(caught.value)
    assert message.startswith("cannot pull workbench-test/never-published:0 (")
    assert "workbench image bootstrap" in message and "image.base" in message


#: no registry has it: its pull fails wherever the test runs, with a registry or without one
NEVER_PUBLISHED = "workbench-test/never-published:0"


@pytest.fixture
def unpullable_default(monkeypatch):  # type: ignore[no-untyped-def]
    """Make the default base image, for one test, an image no registry has. Whether this machine
    can pull python:3.11-slim then does not decide which path the test takes."""
    monkeypatch.setattr(base_image, "DEFAULT_BASE_IMAGE", NEVER_PUBLISHED)


def test_default_falls_back_to_the_bootstrapped_image(client, local_tag, unpullable_default) -> None:  # type: ignore[no-untyped-def]
    image, note = resolve_base_image(client, NEVER_PUBLISHED, pull_timeout=30, bootstrap_tag=local_tag)
    assert image == local_tag
    assert note is not None and note.startswith(f"cannot pull {NEVER_PUBLISHED} (")
    assert note.endswith(f"); using the bootstrapped base image {local_tag}")


def test_default_without_bootstrap_is_an_error(client, unpullable_default) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(BaseImageError) as caught:
        resolve_base_image(client, NEVER_PUBLISHED, pull_timeout=30,
                           bootstrap_tag="workbench-test/missing-bootstrap:0")
    assert "workbench image bootstrap" in str(caught.value)


def test_the_default_and_its_fallback() -> None:
    assert DEFAULT_BASE_IMAGE == "python:3.11-slim"
    assert BOOTSTRAP_TAG == "workbench/python:3.11-bookworm"
