"""A small HTTP/1.1 load generator in pure Python (asyncio, keep-alive), so the benchmarks need no wrk.

``run(url, bodies, conns, seconds)`` keeps ``conns`` connections busy with ``POST`` requests whose
bodies cycle through ``bodies`` and returns requests/s, p50/p99 latency and failures. It runs in its
own process (``run_in_process``) so its CPU use is not charged to the caller. One connection sends
its next request when the answer to the previous one has arrived (like wrk), and latency is from
the first byte written to the last byte read. Measured against the bare BentoML service, this client
spends far less per request than the server does, so the server stays the bottleneck.
"""

from __future__ import annotations

import asyncio
import multiprocessing
import time
from urllib.parse import urlsplit


STAGGER = 0.005
"""Seconds between opening one connection and the next. With several workers sharing the listening
socket, a worker woken by a burst of connects accepts all of them (asyncio's accept loop), so 8
connections opened at once often all land on one worker; opened one at a time they spread."""


def _request(host: str, port: int, path: str, body: bytes, headers: dict[str, str]) -> bytes:
    extra = "".join(f"{k}: {v}\r\n" for k, v in headers.items())
    return (f"POST {path} HTTP/1.1\r\nHost: {host}:{port}\r\nContent-Type: application/json\r\n"
            f"Content-Length: {len(body)}\r\n{extra}\r\n").encode() + body


async def _read_response(reader: asyncio.StreamReader) -> int:
    """Read one response; returns its status."""
    head = await reader.readuntil(b"\r\n\r\n")
    status = int(head[9:12])
    length = 0
    chunked = False
    for line in head.split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        name = name.strip().lower()
        if name == b"content-length":
            length = int(value)
        elif name == b"transfer-encoding" and b"chunked" in value.lower():
            chunked = True
    if chunked:
        while True:
            size = int((await reader.readuntil(b"\r\n")).strip(), 16)
            await reader.readexactly(size + 2)
            if size == 0:
                break
    elif length:
        await reader.readexactly(length)
    return status


async def _load(url: str, bodies: list[bytes], conns: int, seconds: float, headers: dict[str, str],
                stagger: float = STAGGER) -> dict:
    parts = urlsplit(url)
    host, port, path = parts.hostname or "127.0.0.1", parts.port or 80, parts.path or "/"
    requests = [_request(host, port, path, b, headers) for b in bodies]
    latencies: list[float] = []
    failed = 0
    deadline = time.perf_counter() + seconds

    async def one(k: int) -> None:
        nonlocal failed
        await asyncio.sleep(k * stagger)  # one at a time: a burst of connects is accepted by one worker
        offset = k * 131
        reader, writer = await asyncio.open_connection(host, port)
        i = offset
        try:
            while time.perf_counter() < deadline:
                t = time.perf_counter()
                writer.write(requests[i % len(requests)])
                i += 7
                try:
                    status = await _read_response(reader)
                except (asyncio.IncompleteReadError, ConnectionError):
                    failed += 1
                    writer.close()
                    reader, writer = await asyncio.open_connection(host, port)
                    continue
                latencies.append(time.perf_counter() - t)
                if status >= 400:
                    failed += 1
        finally:
            writer.close()

    started = time.perf_counter()
    await asyncio.gather(*(one(k) for k in range(conns)))
    elapsed = time.perf_counter() - started
    latencies.sort()
    pick = lambda q: latencies[min(len(latencies) - 1, int(q * len(latencies)))] * 1000 if latencies else float("nan")  # noqa: E731
    return {"rps": len(latencies) / elapsed, "p50": pick(0.50), "p99": pick(0.99), "failed": failed,
            "requests": len(latencies)}


def run(url: str, bodies: list[bytes], conns: int, seconds: float, headers: dict[str, str] | None = None) -> dict:
    """Drive ``url`` with ``conns`` connections for ``seconds``; requests/s, p50/p99 ms, failures."""
    return asyncio.run(_load(url, bodies, conns, seconds, headers or {}))


def _child(queue: multiprocessing.Queue, args: tuple) -> None:
    queue.put(run(*args))


def run_in_process(url: str, bodies: list[bytes], conns: int, seconds: float,
                   headers: dict[str, str] | None = None) -> dict:
    """:func:`run` in a separate process (its CPU is not the caller's)."""
    ctx = multiprocessing.get_context("spawn")
    queue = ctx.Queue()
    proc = ctx.Process(target=_child, args=(queue, (url, bodies, conns, seconds, headers)))
    proc.start()
    try:
        return queue.get(timeout=seconds + 120)
    finally:
        proc.join(10)
