"""How many followers of one turn a gateway process streams at once, and the memory they take:
`.venv/bin/python bench/fanout.py [--followers 250,500,1000,1500] [--joining 20]`.

The paced fake of bench/paced.py answers slowly (2,500 tokens 20 ms apart: ~50 s a turn) as
Parley's `compatible` provider. At each level one client starts a streamed turn and N followers
join it (`GET …/turns/{id}/events`, as browser tabs or colleagues would), all on one gateway
process; each must receive every delta and the `end` event. Printed per level: followers that
ended well, errors, the gateway's resident memory before and with every follower connected (and
the difference per follower), and how long joining took. The followers run in this process.
"""

import argparse
import asyncio
import contextlib
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # `bench` as a package, from any folder

import httpx

from bench import paced
from bench._common import machine

TOKENS = 2_500
# Followers connecting at once. Each request is authenticated against PostgreSQL through the
# gateway's pool (5 + 5 connections): 500 at the same instant wait past the pool's 10 s and are
# refused with 503 — a burst of arrivals, not the streams, is what that limits.
JOINING = 20


def rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


async def follow(
    client: httpx.AsyncClient, url: str, connected: asyncio.Event, counter: list[int], joining: asyncio.Semaphore
) -> bool:
    """True when the follower saw deltas and the turn's `end`."""
    deltas, event = 0, ""
    try:
        async with contextlib.AsyncExitStack() as stack:
            async with joining:  # followers arrive a few at a time, as people do
                response = await stack.enter_async_context(client.stream("GET", url))
            if response.status_code != 200:
                return False
            counter[0] += 1
            if counter[0] >= counter[1]:
                connected.set()
            async for line in response.aiter_lines():
                if line.startswith("event: "):
                    event = line[7:]
                    deltas += event == "delta"
                    if event in ("end", "error"):
                        return event == "end" and deltas > 0
    except httpx.HTTPError:
        return False
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
            connected, counter, arriving = asyncio.Event(), [0, followers], asyncio.Semaphore(joining)
            joining_at = time.perf_counter()
            tasks = [
                asyncio.create_task(follow(client, f"{turn}/events", connected, counter, arriving))
                for _ in range(followers)
            ]
            try:
                await asyncio.wait_for(connected.wait(), timeout=120)
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
    return f"| {followers} | {good} | {followers - good} | {before:,.0f} | {peak:,.0f} | {per:,.0f} | {joined:,.1f} |"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--followers", default="250,500,1000,1500", help="levels, comma-separated")
    parser.add_argument("--joining", type=int, default=JOINING, help="followers connecting at once")
    args = parser.parse_args(argv)
    print("\n".join(machine()), flush=True)
    with paced.fake_model(TOKENS) as (fake_port, _), paced.parley(fake_port) as (platform, collection_id):
        assert platform.secrets is not None
        auth = {"Authorization": f"Bearer {platform.secrets.admin_api_key}"}
        gateway = platform.children["gateway"].process
        assert gateway is not None
        print("| followers | ended well | errors | gateway RSS before MiB | with all MiB | KiB each | joined in s |")
        print("|---|---|---|---|---|---|---|")
        for followers in (int(n) for n in args.followers.split(",")):
            figures = level(platform.gateway_url, auth, collection_id, gateway.pid, followers, args.joining)
            print(asyncio.run(figures), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
