"""QEMU's own Python client (PyPI qemu.qmp) timed on query-status, for the qmp_qemu bench.

Usage: python qemu_qmp_peer.py SOCKET N sequential|pipelined
Prints commands per second, timed after connecting and negotiating.
"""
import asyncio
import sys
import time

from qemu.qmp import QMPClient


async def main(socket: str, n: int, mode: str) -> None:
    client = QMPClient("xsio-bench")
    await client.connect(socket)
    start = time.perf_counter()
    if mode == "sequential":
        for _ in range(n):
            await client.execute("query-status")
    else:
        await asyncio.gather(*(client.execute("query-status") for _ in range(n)))
    elapsed = time.perf_counter() - start
    await client.disconnect()
    print(n / elapsed)


asyncio.run(main(sys.argv[1], int(sys.argv[2]), sys.argv[3]))
