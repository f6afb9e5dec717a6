#!/usr/bin/env python3
"""A TCP forwarder standing between the relay and RabbitMQ.

    tcp_gate.py LISTEN_PORT UPSTREAM_PORT

Listens on 127.0.0.1:LISTEN_PORT and forwards every connection to
127.0.0.1:UPSTREAM_PORT. Killing the process cuts the broker off (every
forwarded connection closes with it); starting it again restores it.
"""
import asyncio
import sys


async def pipe(reader, writer):
    try:
        while data := await reader.read(65536):
            writer.write(data)
            await writer.drain()
    except (ConnectionError, asyncio.CancelledError):
        pass
    finally:
        writer.close()


async def main(listen_port, upstream_port):
    async def forward(client_reader, client_writer):
        try:
            up_reader, up_writer = await asyncio.open_connection("127.0.0.1", upstream_port)
        except OSError:
            client_writer.close()
            return
        await asyncio.gather(pipe(client_reader, up_writer), pipe(up_reader, client_writer))

    server = await asyncio.start_server(forward, "127.0.0.1", listen_port, reuse_address=True)
    async with server:
        await server.serve_forever()


if __name__ == "__main__":
    asyncio.run(main(int(sys.argv[1]), int(sys.argv[2])))
