import pytest
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


def test_default_falls_back_to_the_bootstrapped_image(client, local_tag) -> None:  # type: ignore[no-untyped-def]
    image, note = resolve_base_image(client, DEFAULT_BASE_IMAGE, pull_timeout=30,
                                     bootstrap_tag=local_tag)
    if image == DEFAULT_BASE_IMAGE:  # this machine can reach a registry
        assert note is None
        return
    assert image == local_tag
    assert note is not None and f"cannot pull {DEFAULT_BASE_IMAGE}" in note and local_tag in note


def test_default_without_bootstrap_is_an_error(client) -> None:  # type: ignore[no-untyped-def]
    try:
        image, _ = resolve_base_image(client, DEFAULT_BASE_IMAGE, pull_timeout=30,
                                      bootstrap_tag="workbench-test/missing-bootstrap:0")
    except BaseImageError as error:
        assert "workbench image bootstrap" in str(error)
    else:
        assert image == DEFAULT_BASE_IMAGE
    assert BOOTSTRAP_TAG == "workbench/python:3.11-bookworm"
