"""Listing semantics shared by every object store, and secrets kept out of messages."""

from __future__ import annotations

from pathlib import Path

import pytest

from mesh_sidecar.errors import InvalidRequest
from mesh_sidecar.pullers.objectstore import StoredObject, plan_downloads
from mesh_sidecar.redact import MASK as REDACTED
from mesh_sidecar.redact import redact


def planned(keys: list[str], prefix: str) -> list[str]:
    dest = Path("/dest")
    objects = [StoredObject(key, 1) for key in keys]
    return [p.target.relative_to(dest).as_posix() for p in plan_downloads(objects, prefix, dest)]


@pytest.mark.parametrize(
    ("keys", "prefix", "expected"),
    [
        (["models/mnist/a", "models/mnist2/b", "models/mnist.txt"], "models/mnist", ["a"]),
        (["models/mnist"], "models/mnist", ["mnist"]),
        (["models/mnist/"], "models/mnist", []),  # a folder marker alone is no model
        (["models/mnist/d/", "models/mnist/d/x"], "models/mnist/", ["d/x"]),
        (["a", "b/c"], "", ["a", "b/c"]),
    ],
)
def test_prefix_semantics(keys: list[str], prefix: str, expected: list[str]) -> None:
    assert planned(keys, prefix) == expected


@pytest.mark.parametrize(
    "key", ["m/../../x", "m/a/../../../x", "m//abs", "m/a\\..\\x", "m/nul\x00"]
)
def test_keys_that_leave_the_model_dir_fail_the_whole_plan(key: str) -> None:
    with pytest.raises(InvalidRequest):
        planned(["m/fine", key], "m")


def test_a_key_that_is_both_file_and_folder_is_refused() -> None:
    with pytest.raises(InvalidRequest, match="both a file and a folder"):
        planned(["m/a", "m/a/b"], "m")


def test_redact_removes_every_kind_of_secret() -> None:
    config = {
        "secret_access_key": "AbCdEfSecretValue123",
        "connection_string": "DefaultEndpointsProtocol=https;AccountName=acc;AccountKey=KEYKEY==;",
        "headers": {"Authorization": ["Bearer tokentokentoken"], "X-Other": "h3ad3rvalue"},
    }
    text = (
        "failed: AbCdEfSecretValue123 https://acc.blob.core.windows.net/c/b?sv=2020&sig=SIGSIG "
        "AccountKey=OTHERKEY== Bearer tokentokentoken h3ad3rvalue https://user:pw@host/x "
        "-----BEGIN PRIVATE KEY-----\nMIIE\n-----END PRIVATE KEY-----"
    )
    out = redact(text, config)
    for secret in [
        "AbCdEfSecretValue123",
        "SIGSIG",
        "OTHERKEY",
        "tokentokentoken",
        "h3ad3rvalue",
        "pw@",
        "MIIE",
    ]:
        assert secret not in out
    assert REDACTED in out
    assert "https://acc.blob.core.windows.net/c/b" in out  # where it failed stays readable
