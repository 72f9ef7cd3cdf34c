"""KeyService: the keyset agents trust, and its two-step rotation (admins only).

See `hub.keys.KeyManager` for the invariants; this is only its gRPC face.
"""

from __future__ import annotations

import grpc

from hub.keys import KeyManager
from hub.state import store_unavailable
from sentinel.v1 import keys_pb2, keys_pb2_grpc


class KeyService(keys_pb2_grpc.KeyServiceServicer):
    def __init__(self, keys: KeyManager) -> None:
        self._keys = keys

    async def GetKeyset(
        self, request: keys_pb2.GetKeysetRequest, context: grpc.aio.ServicerContext
    ) -> keys_pb2.GetKeysetResponse:
        return keys_pb2.GetKeysetResponse(keyset=self._keys.info())

    async def RotateCommandKey(
        self, request: keys_pb2.RotateCommandKeyRequest, context: grpc.aio.ServicerContext
    ) -> keys_pb2.RotateCommandKeyResponse:
        with store_unavailable("publishing a keyset"):
            await self._keys.rotate_command_key()
        return keys_pb2.RotateCommandKeyResponse(keyset=self._keys.info())

    async def RetireKey(
        self, request: keys_pb2.RetireKeyRequest, context: grpc.aio.ServicerContext
    ) -> keys_pb2.RetireKeyResponse:
        with store_unavailable("publishing a keyset"):
            await self._keys.retire(request.key_id)
        return keys_pb2.RetireKeyResponse(keyset=self._keys.info())
