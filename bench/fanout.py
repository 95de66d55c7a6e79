"""How many followers of one turn a gateway process streams at once, and the memory they take:
`.venv/bin/python bench/fanout.py [--followers 250,500,1000,1500] [--joining 20] [--tokens 2500]`.

The paced fake of bench/paced.py answers slowly (2,500 tokens 20 ms apart: ~50 s a turn) as
Parley's `compatible` provider. At each level one client starts a streamed turn and N followers
join it (`GET …/turns/{id}/events`, as browser tabs or colleagues would), all on one gateway
process; each must receive every delta and the `end` event. Printed per level: followers that
ended well, errors, the most streaming at the same moment (a turn shorter than the joining
would let early followers finish first: `--tokens` makes it longer), the gateway's resident
memory before and with every follower connected (and the difference per follower), and how
long joining took. The followers run in this process.
"""

import argparse
import asyncio
import contextlib
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # `bench` as a package, from any folder

import httpx

from bench import paced
from bench._common import machine

TOKENS = 2_500
# Followers connecting at once, by default (`--joining`). Requests with one key that arrive
# together are one key lookup at the gateway (single_flight.py), so a burst of hundreds no longer
# waits past its database pool.
JOINING = 20


def rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


@dataclass(slots=True)
class Streams:
    """Followers connected so far, streaming now, and the most streaming at once."""

    expected: int
    connected: int = 0
    open: int = 0
    peak: int = 0
    all_connected: asyncio.Event = field(default_factory=asyncio.Event)

    def opened(self) -> None:
        self.connected += 1
        self.open += 1
        self.peak = max(self.peak, self.open)
        if self.connected >= self.expected:
            self.all_connected.set()


async def follow(client: httpx.AsyncClient, url: str, streams: Streams, joining: asyncio.Semaphore) -> bool:
    """True when the follower saw deltas and the turn's `end`."""
    deltas, event, opened = 0, "", False
    try:
        async with contextlib.AsyncExitStack() as stack:
            async with joining:  # followers arrive a few at a time, as people do
                response = await stack.enter_async_context(client.stream("GET", url))
            if response.status_code != 200:
                return False
            streams.opened()
            opened = True
            async for line in response.aiter_lines():
                if line.startswith("event: "):
                    event = line[7:]
                    deltas += event == "delta"
                    if event in ("end", "error"):
                        return event == "end" and deltas > 0
    except httpx.HTTPError:
        return False
    finally:
        streams.open -= opened
    return False


async def level(
    gateway_url: str, auth: dict[str, str], collection_id: str, gateway_pid: int, followers: int, joining: int
) -> str:
    limits = httpx.Limits(max_connections=followers + 16, max_keepalive_connections=16)
    async with httpx.AsyncClient(
        base_url=gateway_url, headers=auth, timeout=httpx.Timeout(300.0), limits=limits
    ) as client:
        before = rss_mib(gateway_pid)
        body = {
            "message": paced.QUESTION,
            "collection_ids": [collection_id],
            "stream": True,
            "provider": "compatible",
            "model": "paced",
            "max_tokens": 8_000,
        }
        async with client.stream("POST", "/v1/chat", json=body) as started:
            turn = f"/v1/conversations/{started.headers['x-conversation-id']}/turns/{started.headers['x-turn-id']}"
            streams, arriving = Streams(followers), asyncio.Semaphore(joining)
            joining_at = time.perf_counter()
            tasks = [asyncio.create_task(follow(client, f"{turn}/events", streams, arriving)) for _ in range(followers)]
            try:
                await asyncio.wait_for(streams.all_connected.wait(), timeout=300)
                joined = time.perf_counter() - joining_at
                await asyncio.sleep(2)  # every follower streaming
                peak = rss_mib(gateway_pid)
            except TimeoutError:
                joined, peak = float("nan"), rss_mib(gateway_pid)
            async for _ in started.aiter_lines():
                pass
            results = await asyncio.gather(*tasks)
    good = sum(results)
    per = (peak - before) / followers * 1024
    cells = (followers, good, followers - good, streams.peak, f"{before:,.0f}", f"{peak:,.0f}", f"{per:,.0f}")
    return "| " + " | ".join(str(cell) for cell in cells) + f" | {joined:,.1f} |"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--followers", default="250,500,1000,1500", help="levels, comma-separated")
    parser.add_argument("--joining", type=int, default=JOINING, help="followers connecting at once")
    parser.add_argument("--tokens", type=int, default=TOKENS, help="the turn's length, 20 ms a token")
    args = parser.parse_args(argv)
    print("\n".join(machine()), flush=True)
    with paced.fake_model(args.tokens) as (fake_port, _), paced.parley(fake_port) as (platform, collection_id):
        assert platform.secrets is not None
        auth = {"Authorization": f"Bearer {platform.secrets.admin_api_key}"}
        gateway = platform.children["gateway"].process
        assert gateway is not None
        print(
            "| followers | ended well | errors | streaming at once (most) | gateway RSS before MiB | with all MiB "
            "| KiB each | joined in s |"
        )
        print("|---|---|---|---|---|---|---|---|")
        for followers in (int(n) for n in args.followers.split(",")):
            figures = level(platform.gateway_url, auth, collection_id, gateway.pid, followers, args.joining)
            print(asyncio.run(figures), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
