"""Run SeaweedFS on the container's loopback and open only its S3 and admin UI ports to others.

Why this exists: `weed mini` has one bind address for all its servers. Bound to every address,
its filer, master and volume server answer any container on the network without credentials
(through the filer one can list, read, write and delete bucket objects that S3 refuses). So
weed binds 127.0.0.1 only, and this forwards the two ports meant for others (S3, which checks
every request's signature, and the admin UI, which asks for its login) to weed's loopback
ports; nothing else of weed is reachable from outside the container.

    python3 expose.py LISTEN=TARGET [LISTEN=TARGET ...] -- COMMAND [ARG...]

runs COMMAND (weed), forwards TCP port LISTEN on every address to 127.0.0.1:TARGET, passes
SIGTERM and SIGINT on to COMMAND and exits with its status when it exits. Standard library
only: it runs in the SeaweedFS image (deploy/seaweedfs/Dockerfile).
"""

from __future__ import annotations

import asyncio
import functools
import signal
import sys

CHUNK = 256 * 1024
USAGE = "usage: expose.py LISTEN=TARGET [LISTEN=TARGET ...] -- COMMAND [ARG...]"


def parse(argv: list[str]) -> tuple[list[tuple[int, int]], list[str]]:
    """The (listen, target) port pairs and the command, or SystemExit naming what is wrong."""
    if "--" not in argv:
        sys.exit(f"error: no '--' before the command; {USAGE}")
    split = argv.index("--")
    pairs, command = argv[:split], argv[split + 1 :]
    if not pairs or not command:
        sys.exit(f"error: give at least one LISTEN=TARGET and a command; {USAGE}")
    ports = []
    for pair in pairs:
        listen, _, target = pair.partition("=")
        if not (listen.isdigit() and target.isdigit()):
            sys.exit(f"error: {pair!r} is not LISTEN=TARGET (two port numbers); {USAGE}")
        ports.append((int(listen), int(target)))
    return ports, command


async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        while data := await reader.read(CHUNK):
            writer.write(data)
            await writer.drain()
        if writer.can_write_eof():
            writer.write_eof()
    except OSError:
        writer.close()


async def _forward(
    target: int, client_reader: asyncio.StreamReader, client_writer: asyncio.StreamWriter
) -> None:
    try:
        server_reader, server_writer = await asyncio.open_connection("127.0.0.1", target)
    except OSError:
        # weed not up yet (or gone): the client sees the connection closed and retries.
        client_writer.close()
        return
    await asyncio.gather(_pipe(client_reader, server_writer), _pipe(server_reader, client_writer))
    for writer in (server_writer, client_writer):
        writer.close()


async def run(ports: list[tuple[int, int]], command: list[str]) -> int:
    servers = []
    for listen, target in ports:
        handler = functools.partial(_forward, target)
        try:
            servers.append(await asyncio.start_server(handler, "0.0.0.0", listen))
        except OSError as error:
            sys.exit(f"error: cannot listen on port {listen}: {error.strerror}")
    child = await asyncio.create_subprocess_exec(*command)
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, child.send_signal, signum)
    code = await child.wait()
    for server in servers:
        server.close()
    # A child killed by a signal: the shell's convention, 128 + the signal's number.
    return code if code >= 0 else 128 - code


def main(argv: list[str]) -> None:
    ports, command = parse(argv)
    sys.exit(asyncio.run(run(ports, command)))


if __name__ == "__main__":
    main(sys.argv[1:])
