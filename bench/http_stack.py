"""Should the worker's ``/healthz`` and ``/metrics`` move onto the console's HTTP stack?

``python -m bench.http_stack`` measures, in one run, what each stack costs a worker process:

- **memory and start-up**: a process that imports the commands (``worker.cli``, what
  ``mailworker run`` loads), against one that also imports Starlette and uvicorn, as the
  endpoint on the console's stack would;
- **CPU per request**: the same fixed answer (a body the size of a worker's ``/metrics``)
  served by the worker's own endpoint (:class:`worker.health.HttpEndpoint`'s request
  handling) and by Starlette under uvicorn, each in a server process of its own, one new
  connection per request as probes make them; the server's CPU time is read from ``/proc``.

It prints a table and the ratio of each figure, Starlette+uvicorn against the worker's own.
"""

from __future__ import annotations

import argparse
import asyncio
import socket
import statistics
import subprocess
import sys
import time
from http import HTTPStatus

from bench.processes import cpu_seconds

__all__ = ["main"]

BODY_BYTES = 6 * 1024  # about a worker's /metrics answer with a few profiles
_MB = 1024 * 1024

# Prints the resident set (VmRSS) once the modules are imported.
_IMPORT_PROBE = """
import time
started = time.perf_counter()
{imports}
elapsed = time.perf_counter() - started
rss = next(int(line.split()[1]) * 1024 for line in open("/proc/self/status")
           if line.startswith("VmRSS:"))
print(rss, elapsed)
"""
_WORKER_IMPORTS = "import worker.worker"
_WITH_STARLETTE = (
    "import worker.worker, uvicorn, starlette.applications, starlette.routing, starlette.responses"
)


def _import_cost(imports: str, runs: int) -> tuple[float, float]:
    """Median resident megabytes and import seconds of a fresh interpreter importing ``imports``."""
    sizes, seconds = [], []
    for _ in range(runs):
        probe = _IMPORT_PROBE.format(imports=imports)
        command = [sys.executable, "-c", probe]
        out = subprocess.run(command, check=True, capture_output=True)  # noqa: S603 - our own probe
        rss, elapsed = out.stdout.split()
        sizes.append(int(rss) / _MB)
        seconds.append(float(elapsed))
    return statistics.median(sizes), statistics.median(seconds)


# --- the two servers, each run as `python -m bench.http_stack --serve KIND PORT` -----------


def _serve_own(port: int) -> None:
    """The worker's endpoint: asyncio.start_server and HttpEndpoint's request handling."""
    # Each server process imports only its own stack, so neither pays for the other.
    from worker.health import MAX_REQUEST_HEAD, _parse, _Response, _text  # noqa: PLC0415

    body = b"x" * BODY_BYTES

    async def answer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        head = await reader.readuntil(b"\r\n\r\n")
        request = _parse(head)
        if request is None:
            response = _text(HTTPStatus.BAD_REQUEST)
        else:
            response = _Response(HTTPStatus.OK, body)
        writer.write(response.encode(head_only=False))
        await writer.drain()
        writer.close()
        await writer.wait_closed()

    async def main() -> None:
        server = await asyncio.start_server(answer, "127.0.0.1", port, limit=MAX_REQUEST_HEAD)
        async with server:
            await server.serve_forever()

    asyncio.run(main())


def _serve_starlette(port: int) -> None:
    """The same answer from Starlette under uvicorn, as the console serves its pages."""
    import uvicorn  # noqa: PLC0415
    from starlette.applications import Starlette  # noqa: PLC0415
    from starlette.requests import Request  # noqa: PLC0415
    from starlette.responses import PlainTextResponse  # noqa: PLC0415
    from starlette.routing import Route  # noqa: PLC0415

    body = "x" * BODY_BYTES

    async def metrics(_request: Request) -> PlainTextResponse:
        return PlainTextResponse(body, headers={"cache-control": "no-store"})

    app = Starlette(routes=[Route("/metrics", metrics)])
    uvicorn.run(app, host="127.0.0.1", port=port, log_level="warning", access_log=False)


# --- the client ------------------------------------------------------------------------------


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def _get(port: int) -> bytes:
    with socket.create_connection(("127.0.0.1", port), timeout=5) as connection:
        connection.sendall(b"GET /metrics HTTP/1.1\r\nHost: bench\r\nConnection: close\r\n\r\n")
        chunks = []
        while chunk := connection.recv(65536):
            chunks.append(chunk)
    answer = b"".join(chunks)
    if not answer.startswith(b"HTTP/1.1 200") or not answer.endswith(b"x" * 64):
        raise RuntimeError(f"unexpected answer: {answer[:80]!r}")
    return answer


def _request_cost(kind: str, requests: int) -> tuple[float, float]:
    """Server CPU microseconds per request, and requests a second, for ``requests`` requests."""
    port = _free_port()
    server = subprocess.Popen(  # noqa: S603 - this module, with a port we chose
        [sys.executable, "-m", "bench.http_stack", "--serve", kind, str(port)]
    )
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                _get(port)
                break
            except OSError:
                if time.monotonic() > deadline or server.poll() is not None:
                    raise RuntimeError(f"the {kind} server did not start") from None
                time.sleep(0.05)
        for _ in range(50):  # warm up
            _get(port)
        cpu_before = cpu_seconds(server.pid)
        started = time.perf_counter()
        for _ in range(requests):
            _get(port)
        elapsed = time.perf_counter() - started
        cpu = cpu_seconds(server.pid) - cpu_before
    finally:
        server.terminate()
        server.wait(timeout=10)
    return cpu / requests * 1e6, requests / elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--requests", type=int, default=3000)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--serve", nargs=2, metavar=("KIND", "PORT"), help=argparse.SUPPRESS)
    options = parser.parse_args()
    if options.serve:
        kind, port = options.serve
        (_serve_own if kind == "own" else _serve_starlette)(int(port))
        return

    own_rss, own_import = _import_cost(_WORKER_IMPORTS, options.runs)
    star_rss, star_import = _import_cost(_WITH_STARLETTE, options.runs)
    own_cpu, own_rate = _request_cost("own", options.requests)
    star_cpu, star_rate = _request_cost("starlette", options.requests)
    rows = [
        ("resident memory after imports (MB)", own_rss, star_rss),
        ("import time (ms)", own_import * 1000, star_import * 1000),
        ("server CPU per request (µs)", own_cpu, star_cpu),
        ("requests per second (1 client)", own_rate, star_rate),
    ]
    print(f"{'':38} {'worker own':>12} {'starlette':>12} {'ratio':>7}")
    for label, own, other in rows:
        ratio = f"{other / own:7.2f}" if own else "    n/a"  # a short smoke run may use no tick
        print(f"{label:38} {own:12.1f} {other:12.1f} {ratio}")


if __name__ == "__main__":
    main()
