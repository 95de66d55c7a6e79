"""NATS comes back, the bus comes back: a connection declares the streams again when it
reconnects, and a durable consumer finds (or re-creates) its consumer and goes on, with no
restart of the process that holds them."""

import asyncio
import shutil
import uuid
from pathlib import Path

from nats.aio.msg import Msg
from nats.js import JetStreamContext

from parley.kit import bus
from parley.kit.devstack import EmbeddedNats, free_port


async def _eventually_published(js: JetStreamContext, subject: str, data: bytes, *, within: float = 30.0) -> None:
    """Publish once JetStream takes it (a stream that exists again)."""
    deadline = asyncio.get_running_loop().time() + within
    while True:
        try:
            await js.publish(subject, data, headers={"Nats-Msg-Id": uuid.uuid4().hex}, timeout=2)
            return
        except Exception:
            if asyncio.get_running_loop().time() > deadline:
                raise
            await asyncio.sleep(0.2)


async def _wait_for(received: list[bytes], expected: bytes, *, within: float = 30.0) -> None:
    for _ in range(int(within / 0.1)):
        if expected in received:
            return
        await asyncio.sleep(0.1)
    raise AssertionError(f"{expected!r} never handled; handled: {received}")


async def test_streams_and_consumers_come_back_after_nats_restarts_and_after_a_failover(tmp_path: Path) -> None:
    server = EmbeddedNats(tmp_path / "nats", port=free_port())
    url = server.start()
    nc = await bus.connect(url, name="bus-recovery-test", request_timeout=2)
    js = nc.jetstream(timeout=2)
    await bus.ensure_streams(js)
    handled: list[bytes] = []

    async def remember(message: Msg) -> None:
        handled.append(message.data)

    consumer = bus.Consumer(stream="JOBS", durable="recovery-test", subject="jobs.recovery", handler=remember)
    stop = asyncio.Event()
    task = asyncio.create_task(bus.run_consumer(js, consumer, stop))
    try:
        await js.publish("jobs.recovery", b"before", headers={"Nats-Msg-Id": "before"})
        await _wait_for(handled, b"before")

        # A crash, then the same server on its own store: the memory streams are gone.
        server.kill()
        server.start()
        # Nobody here declares anything: the connection's reconnect hook does.
        await _eventually_published(js, "chat.stream.c.t", b"event")
        assert (await js.stream_info("CHATSTREAM")).state.messages == 1
        assert (await js.stream_info("PROGRESS")).config.name == "PROGRESS"
        await _eventually_published(js, "jobs.recovery", b"after restart")
        await _wait_for(handled, b"after restart")

        # A failover to a server that has never seen us: no stream, no consumer.
        server.kill()
        shutil.rmtree(tmp_path / "nats" / "store")
        server.start()
        await _eventually_published(js, "jobs.recovery", b"after failover")
        await _wait_for(handled, b"after failover")
    finally:
        stop.set()
        await asyncio.wait_for(task, timeout=10)
        await nc.close()
        server.stop()
    assert handled.count(b"before") == 1
