"""The raw ceiling for hub ingest: a grpc.aio AgentService over the same mTLS that only
counts batches and acknowledges each at once (no JetStream, no registry, no checks).

    python bench/raw_grpc_server.py CERTS_DIR    # prints "listening on ADDR", serves until killed
"""

from __future__ import annotations

import asyncio
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import grpc

import certs
from sentinel.tls import TlsFiles, server_credentials
from sentinel.v1 import agent_pb2, agent_pb2_grpc


class CountingAgentService(agent_pb2_grpc.AgentServiceServicer):
    def __init__(self) -> None:
        self.batches = 0

    async def Connect(
        self, requests: AsyncIterator[agent_pb2.ConnectRequest], context: Any
    ) -> AsyncIterator[agent_pb2.ConnectResponse]:
        async for message in requests:
            if message.WhichOneof("message") == "hello":
                yield agent_pb2.ConnectResponse(hello_reply=agent_pb2.HelloReply())
            elif message.WhichOneof("message") == "batch":
                self.batches += 1
                batch = message.batch
                yield agent_pb2.ConnectResponse(
                    ack=agent_pb2.TelemetryAck(boot_id=batch.boot_id, seq=batch.seq)
                )


async def main(certs_dir: Path) -> None:
    layout = certs.CertLayout(certs_dir)
    tls = TlsFiles.load(layout.ca_cert, layout.hub_cert, layout.hub_key)
    server = grpc.aio.server()
    agent_pb2_grpc.add_AgentServiceServicer_to_server(CountingAgentService(), server)
    port = server.add_secure_port("127.0.0.1:0", server_credentials(tls))
    await server.start()
    print(f"listening on 127.0.0.1:{port}", flush=True)
    await server.wait_for_termination()


if __name__ == "__main__":
    asyncio.run(main(Path(sys.argv[1])))
