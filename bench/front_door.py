"""What the front door costs a request: authentication (an API key looked up by its keyed hash
in PostgreSQL, `last_used_at` at most once a minute) and the rate limits (one upsert per bucket in
PostgreSQL), measured on a route that does nothing else.

One gateway app in process, over httpx's ASGI transport (no sockets: what is timed is the app),
on an embedded PostgreSQL and NATS in a temporary folder. The same trivial route is mounted twice:
`/bench/ping` (outside `/v1`: the front door only tags it with a request id) and `/v1/bench/ping`
(authenticated and counted). Three variants, interleaved sample by sample so the machine's noise
falls on all alike: no auth; auth with the tenant's limits off (0: no bucket is counted, the
limiter still reads the database's clock); auth + limits (requests per key and per user: two
upserts). p50 and p99 of each, and the added cost over no auth.

`.venv/bin/python -m bench.front_door` from the repository root; `run(quick=...)` is
bench/run.py's interface.
"""

import asyncio
import tempfile
import time
from pathlib import Path

import httpx
from fastapi import APIRouter

import parley.gateway
from bench._common import Table, median, ms
from parley.gateway import auth, store
from parley.gateway.access import SCOPES
from parley.gateway.api.deps import Services
from parley.gateway.app import create_app
from parley.gateway.clients import Clients
from parley.gateway.config import Settings
from parley.kit import bus, db
from parley.kit.devstack import EmbeddedNats, EmbeddedPostgres, free_port

PEPPER = "bench-pepper-3f9a"


def p99(samples: list[float]) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, round(0.99 * len(ordered)))]


async def _owner_key(sessions: db.Sessions, *, limits_off: bool) -> str:
    key = auth.new_api_key()
    async with sessions.begin() as session:
        tenant = await store.create_tenant(session=session, name=f"bench-{key[-8:]}")
        owner = await store.create_user(session=session, tenant_id=tenant.id, name="bench", role="owner")
        await store.create_key(
            session=session,
            tenant_id=tenant.id,
            user_id=owner.id,
            name="bench",
            key_hash=auth.hash_api_key(key, pepper=PEPPER),
            prefix=auth.visible_prefix(key),
            scopes=list(SCOPES),
            expires_at=None,
        )
        # High enough never to refuse during the run; 0 turns counting off.
        limit = 0 if limits_off else 1_000_000_000
        await store.set_tenant_limits(
            session=session,
            tenant_id=tenant.id,
            requests_per_minute=limit,
            chat_requests_per_minute=limit,
            llm_tokens_per_minute=limit,
        )
    return key


async def _measure(database_url: str, nats_url: str, *, samples: int) -> dict[str, list[float]]:
    engine = db.create_engine(database_url)
    await db.migrate(engine, schema="gateway", migrations=Path(parley.gateway.__file__).parent / "migrations")
    sessions = db.session_factory(engine)
    nc = await bus.connect(nats_url, name="bench-front-door")
    nowhere = f"127.0.0.1:{free_port()}"
    settings = Settings(
        env="test",
        database_url=database_url,
        nats_url=nats_url,
        ingestion_target=nowhere,
        chat_target=nowhere,
        usage_target=nowhere,
        retrieval_target=nowhere,
        api_key_pepper=PEPPER,
        internal_secret="bench-internal-secret",
    )
    signer = settings.signer()
    clients = Clients.open(
        ingestion_target=nowhere,
        chat_target=nowhere,
        usage_target=nowhere,
        retrieval_target=nowhere,
        deadline_seconds=1,
        signer=signer,
    )
    services = Services(
        settings=settings,
        sessions=sessions,
        nc=nc,
        js=nc.jetstream(),
        authenticator=auth.Authenticator.from_settings(settings),
        ingestion=clients.ingestion,
        retrieval=clients.retrieval,
        chat=clients.chat,
        usage=clients.usage,
    )
    app = create_app(services)
    ping = APIRouter()

    @ping.get("/bench/ping")
    @ping.get("/v1/bench/ping")
    async def pong() -> dict[str, str]:
        return {"status": "ok"}

    app.include_router(ping)
    counted = {"Authorization": f"Bearer {await _owner_key(sessions, limits_off=False)}"}
    uncounted = {"Authorization": f"Bearer {await _owner_key(sessions, limits_off=True)}"}
    variants = {
        "no auth (`/bench/ping`)": ("/bench/ping", {}),
        "auth, limits off": ("/v1/bench/ping", uncounted),
        "auth + rate limits": ("/v1/bench/ping", counted),
    }
    times: dict[str, list[float]] = {name: [] for name in variants}
    try:
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://gateway") as client:
            for _ in range(20):  # warm the pool and the caches
                for path, headers in variants.values():
                    assert (await client.get(path, headers=headers)).status_code == 200
            for _ in range(samples):
                for name, (path, headers) in variants.items():
                    started = time.perf_counter()
                    response = await client.get(path, headers=headers)
                    times[name].append(time.perf_counter() - started)
                    assert response.status_code == 200, response.text
    finally:
        await clients.close()
        await nc.drain()
        await engine.dispose()
    return times


def run(*, quick: bool = False) -> Table:
    samples = 200 if quick else 2000
    with tempfile.TemporaryDirectory(prefix="parley-bench-") as folder:
        postgres = EmbeddedPostgres(Path(folder) / "postgres")
        nats = EmbeddedNats(Path(folder) / "nats", port=free_port())
        try:
            database_url, nats_url = postgres.start(), nats.start()
            times = asyncio.run(_measure(database_url, nats_url, samples=samples))
        finally:
            nats.stop()
            postgres.stop()
    table = Table(
        f"front_door — a trivial route, {samples} requests per variant, interleaved",
        ("variant", "p50 ms", "p99 ms", "added p50 ms", "added p99 ms"),
    )
    base = times["no auth (`/bench/ping`)"]
    for name, samples_of in times.items():
        table.add(
            name,
            ms(median(samples_of), 2),
            ms(p99(samples_of), 2),
            ms(median(samples_of) - median(base), 2),
            ms(p99(samples_of) - p99(base), 2),
        )
    table.notes.append(
        "in process over httpx's ASGI transport; PostgreSQL embedded on the same machine (a loopback socket)"
    )
    return table


if __name__ == "__main__":
    print(run().render())
