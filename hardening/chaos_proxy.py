"""A delaying TCP proxy for the Redis chaos campaign (hardening/chaos.sh).

    python hardening/chaos_proxy.py --port P --upstream-port R --control-port C

Listens on 127.0.0.1:P and forwards every connection to Redis on 127.0.0.1:R (one
upstream connection per client connection; a client whose upstream cannot be reached is
closed at once, as a dead Redis would refuse it). Each chunk read in either direction is
written out ``delay`` seconds after it arrived (order kept per direction), so the delay
is added latency, not a throughput cap.

Control channel: a line protocol on 127.0.0.1:C, one command per connection or several:

    delay 0.4     set the added latency (seconds) for every chunk from now on
    cut           close every proxied connection (both sides) now
    stats         "conns N accepted N cut N delay D"

each answered by one line ("ok ..." or the stats). Prints "ready" on stdout when both
listeners are up. No pass criterion of its own: chaos_run.py drives it.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import time


class Proxy:
    def __init__(self, upstream_port: int) -> None:
        self.upstream_port = upstream_port
        self.delay = 0.0
        self.conns: set[tuple[asyncio.StreamWriter, asyncio.StreamWriter]] = set()
        self.accepted = 0
        self.cut_count = 0

    async def handle(self, creader: asyncio.StreamReader, cwriter: asyncio.StreamWriter) -> None:
        self.accepted += 1
        try:
            ureader, uwriter = await asyncio.wait_for(
                asyncio.open_connection("127.0.0.1", self.upstream_port), timeout=5.0)
        except (OSError, asyncio.TimeoutError):
            cwriter.close()
            return
        pair = (cwriter, uwriter)
        self.conns.add(pair)
        try:
            await asyncio.gather(self.pump(creader, uwriter), self.pump(ureader, cwriter),
                                 return_exceptions=True)
        finally:
            self.conns.discard(pair)
            for w in pair:
                w.close()

    async def pump(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        queue: asyncio.Queue[tuple[float, bytes]] = asyncio.Queue()
        sender = asyncio.create_task(self.send(queue, writer))
        try:
            while True:
                data = await reader.read(65536)
                if not data:
                    break
                queue.put_nowait((time.monotonic() + self.delay, data))
        except OSError:
            pass
        finally:
            queue.put_nowait((0.0, b""))  # end marker: sent after what is queued
            try:
                await sender
            except OSError:
                pass

    @staticmethod
    async def send(queue: asyncio.Queue, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                due, data = await queue.get()
                if not data:
                    break
                wait = due - time.monotonic()
                if wait > 0:
                    await asyncio.sleep(wait)
                writer.write(data)
                await writer.drain()
        finally:
            writer.close()

    def cut(self) -> int:
        n = 0
        for pair in list(self.conns):
            for w in pair:
                transport = w.transport
                if transport is not None:
                    transport.abort()  # RST, like a dropped link, no orderly close
            n += 1
        self.conns.clear()
        self.cut_count += n
        return n

    async def control(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                line = await reader.readline()
                if not line:
                    break
                words = line.decode().split()
                if not words:
                    continue
                if words[0] == "delay" and len(words) == 2:
                    self.delay = max(0.0, float(words[1]))
                    answer = f"ok delay {self.delay:g}"
                elif words[0] == "cut":
                    answer = f"ok cut {self.cut()}"
                elif words[0] == "stats":
                    answer = (f"conns {len(self.conns)} accepted {self.accepted} cut {self.cut_count} "
                              f"delay {self.delay:g}")
                else:
                    answer = "error unknown command"
                writer.write(answer.encode() + b"\n")
                await writer.drain()
        finally:
            writer.close()


async def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--upstream-port", type=int, required=True)
    ap.add_argument("--control-port", type=int, required=True)
    args = ap.parse_args()
    proxy = Proxy(args.upstream_port)
    server = await asyncio.start_server(proxy.handle, "127.0.0.1", args.port, reuse_address=True)
    control = await asyncio.start_server(proxy.control, "127.0.0.1", args.control_port, reuse_address=True)
    print("ready", flush=True)
    async with server, control:
        await asyncio.gather(server.serve_forever(), control.serve_forever())


if __name__ == "__main__":
    try:
        asyncio.run(main())
    except KeyboardInterrupt:
        sys.exit(0)
