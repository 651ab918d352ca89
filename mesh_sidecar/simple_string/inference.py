"""The KServe V2 `inference.GRPCInferenceService` of the simple-string server.

Messages and the servicer base come from tritonclient's generated modules, so
this server and every KServe V2 client in the process share one copy of the
`inference` package.
"""

from __future__ import annotations

import math
import struct
from typing import Any

import grpc
from tritonclient.grpc import service_pb2, service_pb2_grpc
from tritonclient.utils import deserialize_bytes_tensor

import mesh_sidecar
from mesh_sidecar.simple_string.models import ModelError, ModelStore

SERVER_NAME = "simple-string"
PLATFORM = "simple-string"
OUTPUT_NAME = "OUTPUT"
#: Every model has a single version; "" asks for the latest, which is this one.
MODEL_VERSION = "1"
READY = "READY"
UNAVAILABLE = "UNAVAILABLE"


def _invalid(message: str) -> ModelError:
    return ModelError(grpc.StatusCode.INVALID_ARGUMENT, message)


def _check_version(name: str, version: str) -> None:
    if version not in ("", MODEL_VERSION):
        raise ModelError(
            grpc.StatusCode.NOT_FOUND, f"model {name!r} has no version {version!r} (only 1)"
        )


def input_elements(request: Any) -> tuple[list[bytes], list[int]]:
    """The elements and shape of the request's single BYTES input."""
    if len(request.inputs) != 1:
        raise _invalid(f"expected exactly one BYTES input, got {len(request.inputs)}")
    tensor = request.inputs[0]
    if tensor.datatype != "BYTES":
        raise _invalid(f"input {tensor.name!r} is {tensor.datatype or 'untyped'}, expected BYTES")
    shape = list(tensor.shape)
    if any(dim < 0 for dim in shape):
        raise _invalid(f"input {tensor.name!r} has a negative dimension in shape {shape}")
    count = math.prod(shape)
    if request.raw_input_contents:
        if len(request.raw_input_contents) != 1 or tensor.contents.bytes_contents:
            raise _invalid("give the input either as raw_input_contents or as contents, once")
        try:
            elements = [bytes(e) for e in deserialize_bytes_tensor(request.raw_input_contents[0])]
        except struct.error:
            raise _invalid(
                f"raw contents of input {tensor.name!r} are not length-prefixed BYTES elements"
            ) from None
    else:
        elements = list(tensor.contents.bytes_contents)
    if len(elements) != count:
        raise _invalid(
            f"input {tensor.name!r} has {len(elements)} elements but its shape {shape} "
            f"holds {count}"
        )
    return elements, shape


class SimpleStringInferenceServicer(service_pb2_grpc.GRPCInferenceServiceServicer):
    """KServe V2 inference and repository calls over a `ModelStore`."""

    def __init__(self, store: ModelStore) -> None:
        self.store = store
        # (store generation, RepositoryIndex(ready=true) answer) once built.
        self._ready_index: tuple[int, Any] | None = None

    async def ServerLive(self, request: Any, context: grpc.aio.ServicerContext) -> Any:
        return service_pb2.ServerLiveResponse(live=True)

    async def ServerReady(self, request: Any, context: grpc.aio.ServicerContext) -> Any:
        return service_pb2.ServerReadyResponse(ready=True)

    async def ServerMetadata(self, request: Any, context: grpc.aio.ServicerContext) -> Any:
        return service_pb2.ServerMetadataResponse(
            name=SERVER_NAME, version=mesh_sidecar.__version__, extensions=["model_repository"]
        )

    async def ModelReady(self, request: Any, context: grpc.aio.ServicerContext) -> Any:
        ready = request.name in self.store and request.version in ("", MODEL_VERSION)
        return service_pb2.ModelReadyResponse(ready=ready)

    async def ModelMetadata(self, request: Any, context: grpc.aio.ServicerContext) -> Any:
        try:
            _check_version(request.name, request.version)
            self.store.text(request.name)
        except ModelError as exc:
            await context.abort(exc.code, exc.message)
        tensor = service_pb2.ModelMetadataResponse.TensorMetadata
        return service_pb2.ModelMetadataResponse(
            name=request.name,
            versions=[MODEL_VERSION],
            platform=PLATFORM,
            inputs=[tensor(name="INPUT", datatype="BYTES", shape=[-1])],
            outputs=[tensor(name=OUTPUT_NAME, datatype="BYTES", shape=[-1])],
        )

    async def ModelInfer(self, request: Any, context: grpc.aio.ServicerContext) -> Any:
        try:
            _check_version(request.model_name, request.model_version)
            text = self.store.text(request.model_name)
            elements, shape = input_elements(request)
            for wanted in request.outputs:
                if wanted.name != OUTPUT_NAME:
                    raise _invalid(f"unknown output {wanted.name!r} (the only one is OUTPUT)")
        except ModelError as exc:
            await context.abort(exc.code, exc.message)
        answers = [text + element for element in elements]
        # KServe V2 raw BYTES: each element as a 4-byte little-endian length, then
        # its bytes. Joined directly: numpy and serialize_byte_tensor cost more than
        # the rest of this method for the one-element requests that are the norm.
        raw = b"".join(len(answer).to_bytes(4, "little") + answer for answer in answers)
        return service_pb2.ModelInferResponse(
            model_name=request.model_name,
            model_version=MODEL_VERSION,
            id=request.id,
            outputs=[
                service_pb2.ModelInferResponse.InferOutputTensor(
                    name=OUTPUT_NAME, datatype="BYTES", shape=shape
                )
            ],
            raw_output_contents=[raw],
        )

    async def RepositoryIndex(self, request: Any, context: grpc.aio.ServicerContext) -> Any:
        # A sidecar asks for the ready index every 2 s. With tens of thousands of
        # models, building it takes tens of milliseconds that every inference
        # request waits behind: answer the same message until a model comes or goes.
        generation = self.store.generation
        if request.ready and self._ready_index is not None:
            built_at, response = self._ready_index
            if built_at == generation:
                return response
        index = service_pb2.RepositoryIndexResponse.ModelIndex
        entries = await self.store.index(ready_only=request.ready)
        response = service_pb2.RepositoryIndexResponse(
            models=[
                index(name=name, version=MODEL_VERSION, state=READY if loaded else UNAVAILABLE)
                for name, loaded in entries
            ]
        )
        if request.ready:
            self._ready_index = (generation, response)
        return response

    async def RepositoryModelLoad(self, request: Any, context: grpc.aio.ServicerContext) -> Any:
        try:
            # Reading a missing key of a proto map would insert it: check first.
            given = request.parameters["path"].string_param if "path" in request.parameters else ""
            path = self.store.resolve(request.model_name, given)
            await self.store.load(request.model_name, path)
        except ModelError as exc:
            await context.abort(exc.code, f"failed to load {request.model_name!r}: {exc.message}")
        return service_pb2.RepositoryModelLoadResponse()

    async def RepositoryModelUnload(self, request: Any, context: grpc.aio.ServicerContext) -> Any:
        try:
            await self.store.unload(request.model_name)
        except ModelError as exc:
            await context.abort(exc.code, exc.message)
        return service_pb2.RepositoryModelUnloadResponse()
