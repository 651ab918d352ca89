"""Storage-config secrets written for the Go sidecar (modelmesh-serving's docs) work unchanged."""

from __future__ import annotations

import json

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from mesh_sidecar.pullers.azure import build_client as azure_client
from mesh_sidecar.pullers.base import PullerSettings, StorageSource
from mesh_sidecar.pullers.gcs import build_client as gcs_client
from mesh_sidecar.pullers.http import HttpPuller, header_list, model_url
from mesh_sidecar.pullers.registry import PULLERS
from mesh_sidecar.pullers.s3 import S3Puller

# As the docs show them (values are the docs' placeholders).
S3_DOC = """{
  "type": "s3",
  "access_key_id": "minioadmin",
  "secret_access_key": "minioadmin/K7MDENG/bPxRfiCYEXAMPLEKEY",
  "endpoint_url": "http://minio:9000",
  "default_bucket": "modelmesh-example-models",
  "region": "us-south"
}"""
AZURE_CONNECTION = (
    "DefaultEndpointsProtocol=https;AccountName=modelmeshtest;"
    "AccountKey=a2V5a2V5a2V5;EndpointSuffix=core.windows.net"
)
AZURE_DOC = json.dumps(
    {
        "type": "azure",
        "account_name": "modelmeshtest",
        "container": "models",
        "connection_string": AZURE_CONNECTION,
    },
    indent=2,
)
HTTP_DOC = """{
  "type": "http",
  "url": "https://models.example.com/path/",
  "headers": {"Authorization": "Bearer abc", "X-Multi": ["a", "b"]}
}"""


def gcs_doc() -> str:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    ).decode()
    return json.dumps(
        {"type": "gcs", "private_key": pem, "client_email": "sa@proj.iam.gserviceaccount.com"}
    )


@pytest.mark.parametrize("doc", [S3_DOC, AZURE_DOC, HTTP_DOC])
def test_every_documented_type_has_a_puller(doc: str) -> None:
    config = json.loads(doc)
    assert PULLERS.get(config["type"]).type == config["type"]


def test_s3_doc_config_builds_a_client_and_location() -> None:
    config = json.loads(S3_DOC)
    puller = S3Puller(PullerSettings())
    source = StorageSource("s3", config, "sklearn/mnist-svm.joblib")
    assert puller.location(source) == ("modelmesh-example-models", "sklearn/mnist-svm.joblib")
    client = puller._client(source).s3
    assert client.meta.endpoint_url == "http://minio:9000"
    assert client.meta.region_name == "us-south"


def test_gcs_and_azure_doc_configs_build_clients() -> None:
    assert gcs_client(json.loads(gcs_doc())) is not None
    client = azure_client(json.loads(AZURE_DOC))
    assert client.container_name == "models"
    assert client.account_name == "modelmeshtest"


def test_http_doc_config() -> None:
    config = json.loads(HTTP_DOC)
    assert (
        model_url(config["url"], "m/model.onnx") == "https://models.example.com/path/m/model.onnx"
    )
    assert header_list(config) == [
        ("Authorization", "Bearer abc"),
        ("X-Multi", "a"),
        ("X-Multi", "b"),
    ]
    assert HttpPuller(PullerSettings())._client(config) is not None
