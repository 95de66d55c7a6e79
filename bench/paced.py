"""What Parley adds to a model's time to first token, measured as a new user would:
`.venv/bin/python bench/paced.py [--clients 1,10,50,200] [--seconds 12] [--no-litellm]`.

An OpenAI-compatible fake model streams 100 tokens 20 ms apart (its own process, keep-alive
HTTP/1.1, like a real provider's server); Parley runs it as its `compatible` provider, model
`paced`, over one collection holding a manual. Each client asks a question in a new
conversation, back to back (closed loop), for `--seconds` at each level of concurrency; in the
same run, at each level, the same clients ask the fake directly and, when it installs from PyPI,
the LiteLLM proxy in front of the same fake (installed by this script into its own virtualenv,
`.parley/bench/litellm`: never a dependency of Parley). Every target is asked the same way, by
the same client code: `POST /v1/chat/completions` streamed, first token = the first chunk with
content. Parley is also asked through its own `POST /v1/chat` SSE (`parley-sse`). `parley-local` is
Parley with its `local` provider (no model: an extractive answer at once), the closed-loop
turns/s of Parley alone: `--targets parley-local` (its tokens are not the fake's 100, so its
CPU column is per turn's worth of 100 tokens, not per streamed token).

Printed per target and level: first token p50/p99, *added* first token (the target's percentile
minus the direct one's of the same level), end p50/p99, turns/s, errors, and the CPU seconds the
target's processes used per 1,000 streamed tokens (Parley: every service, PostgreSQL and NATS;
LiteLLM: its proxy; direct: the fake). The clients run in this process and share the machine's
cores with what they measure: at 200 clients they cost CPU too. Nothing passes or fails on time.
"""

import argparse
import asyncio
import contextlib
import json
import math
import os
import shutil
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # `bench` as a package, from any folder

import httpx

from bench._common import machine, quantile
from bench.end_to_end import running_platform, upload_until_ready
from parley.kit.devstack import Platform, Ports

TOKENS = 100
PACE_SECONDS = 0.020
QUESTION = "How often should I descale the boiler?"
MANUAL = """# Espresso machine manual

## Descaling

Descale the boiler every 200 shots with citric acid dissolved in warm water.
Run the solution through the group head until the tank is empty, then rinse twice.

## Grinding

Use a burr grinder set to a fine grind; the shot should take 25 to 30 seconds.
"""
ROOT = Path(__file__).resolve().parent.parent
LITELLM_VENV = ROOT / ".parley" / "bench" / "litellm"
LITELLM_KEY = f"sk-{uuid.uuid4().hex}{uuid.uuid4().hex}"


# --- the paced fake: `python bench/paced.py fake --port N` -------------------------------------


async def _fake_connection(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, tokens: int) -> None:
    """Keep-alive HTTP/1.1: requests one after another on the connection, as SDK pools reuse it."""
    try:
        while True:
            line = await reader.readline()
            if not line:
                return
            method, path, _ = line.decode().split(" ", 2)
            length = 0
            while (header := await reader.readline()) not in (b"\r\n", b""):
                name, _, value = header.decode().partition(":")
                if name.strip().lower() == "content-length":
                    length = int(value)
            body = json.loads(await reader.readexactly(length)) if length else {}
            if method == "POST" and path.endswith("/chat/completions"):
                await _fake_completion(writer, body, tokens)
            elif path.endswith("/models"):
                _send_json(writer, {"object": "list", "data": [{"id": "paced", "object": "model", "owned_by": "x"}]})
            else:
                _send_json(writer, {"error": {"message": "not found"}}, status="404 Not Found")
            await writer.drain()
    except (ConnectionError, asyncio.IncompleteReadError):
        return
    finally:
        writer.close()


def _send_json(writer: asyncio.StreamWriter, body: object, *, status: str = "200 OK") -> None:
    payload = json.dumps(body).encode()
    head = f"HTTP/1.1 {status}\r\ncontent-type: application/json\r\ncontent-length: {len(payload)}\r\n\r\n"
    writer.write(head.encode() + payload)


async def _fake_completion(writer: asyncio.StreamWriter, body: dict[str, Any], tokens: int = TOKENS) -> None:
    base = {"id": f"chatcmpl-{uuid.uuid4().hex}", "created": int(time.time()), "model": body.get("model", "paced")}
    usage = {"prompt_tokens": 50, "completion_tokens": tokens, "total_tokens": 50 + tokens}
    if not body.get("stream"):
        await asyncio.sleep(PACE_SECONDS * tokens)
        message = {"role": "assistant", "content": "".join(f"word{i} " for i in range(tokens))}
        choice = {"index": 0, "message": message, "finish_reason": "stop"}
        _send_json(writer, {**base, "object": "chat.completion", "choices": [choice], "usage": usage})
        return
    head = "HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\ntransfer-encoding: chunked\r\n\r\n"
    writer.write(head.encode())

    def chunk(data: object) -> None:
        frame = b"data: " + (data if isinstance(data, bytes) else json.dumps(data).encode()) + b"\n\n"
        writer.write(f"{len(frame):x}\r\n".encode() + frame + b"\r\n")

    with_usage = bool((body.get("stream_options") or {}).get("include_usage"))
    extra = {"usage": None} if with_usage else {}
    chunk({**base, "object": "chat.completion.chunk", **extra, "choices": [_delta({"role": "assistant"})]})
    for i in range(tokens):
        await asyncio.sleep(PACE_SECONDS)
        chunk({**base, "object": "chat.completion.chunk", **extra, "choices": [_delta({"content": f"word{i} "})]})
        await writer.drain()
    chunk({**base, "object": "chat.completion.chunk", **extra, "choices": [_delta({}, "stop")]})
    if with_usage:
        chunk({**base, "object": "chat.completion.chunk", "choices": [], "usage": usage})
    chunk(b"[DONE]")
    writer.write(b"0\r\n\r\n")


def _delta(delta: dict[str, str], finish: str | None = None) -> dict[str, Any]:
    return {"index": 0, "delta": delta, "finish_reason": finish}


async def _serve_fake(port: int, tokens: int) -> None:
    async def connection(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await _fake_connection(reader, writer, tokens)

    server = await asyncio.start_server(connection, "127.0.0.1", port, backlog=1024)
    async with server:
        await server.serve_forever()


# --- clients -----------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Turn:
    headers: float  # the response's headers: Parley has started the turn (retrieval, hold) by then
    first: float
    end: float
    ok: bool


@dataclass(slots=True)
class Target:
    name: str
    url: str
    body: dict[str, Any]
    headers: dict[str, str]
    pids: Callable[[], set[int]]
    sse: bool = False  # Parley's own /v1/chat events rather than OpenAI chunks


async def one_turn(client: httpx.AsyncClient, target: Target) -> Turn:
    started = time.perf_counter()
    headers, first, ok, event = math.nan, math.nan, False, ""
    try:
        async with client.stream("POST", target.url, json=target.body, headers=target.headers) as response:
            headers = time.perf_counter() - started
            if response.status_code != 200:
                await response.aread()
                return Turn(headers, math.nan, time.perf_counter() - started, False)
            async for line in response.aiter_lines():
                if line.startswith("event: "):
                    event = line[7:]
                    continue
                if not line.startswith("data: "):
                    continue
                data = line[6:]
                if target.sse:
                    if event == "delta" and math.isnan(first):
                        first = time.perf_counter() - started
                    elif event in ("end", "error"):
                        ok = event == "end"
                        break
                    continue
                if data == "[DONE]":
                    ok = True
                    break
                if math.isnan(first) and '"content": "' in data.replace('":"', '": "'):
                    chunk = json.loads(data)
                    if any((choice.get("delta") or {}).get("content") for choice in chunk.get("choices") or []):
                        first = time.perf_counter() - started
                elif '"error"' in data and "error" in json.loads(data):
                    break
    except httpx.HTTPError:
        ok = False
    return Turn(headers, first, time.perf_counter() - started, ok and not math.isnan(first))


@dataclass(slots=True)
class Level:
    target: str
    clients: int
    turns: list[Turn] = field(default_factory=list)
    seconds: float = 0.0
    cpu_seconds: float = 0.0

    def good(self) -> list[Turn]:
        return [turn for turn in self.turns if turn.ok]

    def first(self, q: float) -> float:
        return quantile([turn.first for turn in self.good()], q)

    def headers(self, q: float) -> float:
        return quantile([turn.headers for turn in self.good()], q)

    def end(self, q: float) -> float:
        return quantile([turn.end for turn in self.good()], q)


async def run_level(target: Target, clients: int, seconds: float) -> Level:
    limits = httpx.Limits(max_connections=clients + 8, max_keepalive_connections=clients + 8)
    level = Level(target.name, clients)
    async with httpx.AsyncClient(timeout=httpx.Timeout(120.0), limits=limits) as client:
        await one_turn(client, target)  # warm: connections, caches, the first import of anything
        stop_at = time.monotonic() + seconds

        async def closed_loop() -> None:
            while time.monotonic() < stop_at:
                level.turns.append(await one_turn(client, target))

        cpu_before, started = cpu_seconds(target.pids()), time.perf_counter()
        await asyncio.gather(*(closed_loop() for _ in range(clients)))
        level.seconds = time.perf_counter() - started
        level.cpu_seconds = cpu_seconds(target.pids()) - cpu_before
    return level


# --- processes and their CPU -------------------------------------------------------------------


def cpu_seconds(pids: set[int]) -> float:
    """User + system CPU of these processes so far (a process gone meanwhile counts nothing)."""
    ticks = os.sysconf("SC_CLK_TCK")
    total = 0
    for pid in pids:
        with contextlib.suppress(OSError):
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
            total += int(fields[11]) + int(fields[12])
    return total / ticks


def with_descendants(roots: set[int]) -> set[int]:
    parents: dict[int, int] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            with contextlib.suppress(OSError):
                parents[int(entry.name)] = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
    found = set(roots)
    grew = True
    while grew:
        grew = False
        for pid, parent in parents.items():
            if parent in found and pid not in found:
                found.add(pid)
                grew = True
    return found


def processes_under(folder: Path) -> set[int]:
    """PostgreSQL's and NATS's processes of a platform: those whose command line names its folder."""
    found: set[int] = set()
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            with contextlib.suppress(OSError):
                if str(folder).encode() in (entry / "cmdline").read_bytes():
                    found.add(int(entry.name))
    return found


def wait_for(url: str, *, within: float) -> None:
    deadline = time.monotonic() + within
    while True:
        with contextlib.suppress(httpx.HTTPError):
            if httpx.get(url, timeout=2).status_code < 500:
                return
        if time.monotonic() > deadline:
            raise RuntimeError(f"{url} did not answer within {within:.0f}s")
        time.sleep(0.2)


# --- the run -----------------------------------------------------------------------------------


@contextlib.contextmanager
def fake_model(tokens: int = TOKENS) -> Iterator[tuple[int, subprocess.Popen[bytes]]]:
    port = Ports.free().gateway
    process = subprocess.Popen([sys.executable, __file__, "fake", "--port", str(port), "--tokens", str(tokens)])
    try:
        wait_for(f"http://127.0.0.1:{port}/v1/models", within=30)
        yield port, process
    finally:
        process.terminate()
        process.wait(10)


@contextlib.contextmanager
def parley(fake_port: int) -> Iterator[tuple[Platform, str]]:
    settings = {
        "PARLEY_COMPATIBLE_BASE_URL": f"http://127.0.0.1:{fake_port}/v1",
        "PARLEY_COMPATIBLE_MODELS": "paced",
        # The bench measures the relay, not the limits: none (0 = no limit).
        "PARLEY_RATE_REQUESTS_PER_MINUTE": "0",
        "PARLEY_RATE_CHAT_REQUESTS_PER_MINUTE": "0",
        "PARLEY_RATE_LLM_TOKENS_PER_MINUTE": "0",
    }
    with running_platform(settings) as (platform, _):
        assert platform.secrets is not None
        api = httpx.Client(
            base_url=platform.gateway_url,
            headers={"Authorization": f"Bearer {platform.secrets.admin_api_key}"},
            timeout=60,
        )
        collection = api.post("/v1/collections", json={"name": "manuals"}).raise_for_status().json()
        upload_until_ready(api, collection["id"], "espresso.md", MANUAL)
        yield platform, collection["id"]


def install_litellm() -> Path | None:
    """The LiteLLM proxy in a virtualenv of its own; None when it does not install here."""
    binary = LITELLM_VENV / "bin" / "litellm"
    if binary.exists():
        return binary
    try:
        subprocess.run([sys.executable, "-m", "venv", str(LITELLM_VENV)], check=True)
        pip = [str(LITELLM_VENV / "bin" / "pip"), "install", "--quiet", "litellm[proxy]"]
        subprocess.run(pip, check=True, timeout=900)
    except (subprocess.SubprocessError, OSError) as error:
        print(f"(LiteLLM did not install: {error}; its rows are left out)", flush=True)
        return None
    return binary if binary.exists() else None


@contextlib.contextmanager
def litellm_proxy(binary: Path, fake_port: int) -> Iterator[tuple[int, subprocess.Popen[bytes]]]:
    port = Ports.free().gateway
    folder = Path(tempfile.mkdtemp(prefix="litellm-"))
    config = folder / "config.yaml"
    config.write_text(
        "model_list:\n"
        "  - model_name: paced\n"
        "    litellm_params:\n"
        "      model: openai/paced\n"
        f"      api_base: http://127.0.0.1:{fake_port}/v1\n"
        "      api_key: not-needed\n"
    )
    log = (folder / "litellm.log").open("wb")
    # The proxy refuses to start without a master key (it would accept anyone); the clients send it.
    env = {**os.environ, "LITELLM_LOG": "ERROR", "LITELLM_MASTER_KEY": LITELLM_KEY}
    argv = [str(binary), "--config", str(config), "--host", "127.0.0.1", "--port", str(port), "--num_workers", "1"]
    process = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT, env=env)
    try:
        wait_for(f"http://127.0.0.1:{port}/health/liveliness", within=180)
        yield port, process
    finally:
        process.terminate()
        with contextlib.suppress(subprocess.TimeoutExpired):
            process.wait(10)
        process.kill()
        shutil.rmtree(folder, ignore_errors=True)


def row(level: Level, direct: Level | None) -> str:
    def ms(value: float) -> str:
        return "–" if math.isnan(value) else f"{value * 1000:,.0f}"

    added = "–"
    if direct is not None and level is not direct and level.target != "parley-local":  # local asks no fake
        added = f"{ms(level.first(0.5) - direct.first(0.5))} / {ms(level.first(0.99) - direct.first(0.99))}"
    good = level.good()
    tokens = len(good) * TOKENS
    cpu = f"{level.cpu_seconds / tokens * 1000:.2f}" if tokens else "–"
    cells = (
        level.target,
        str(level.clients),
        f"{ms(level.first(0.5))} / {ms(level.first(0.99))}",
        added,
        f"{ms(level.end(0.5))} / {ms(level.end(0.99))}",
        f"{len(good) / level.seconds:.1f}" if level.seconds else "–",
        str(len(level.turns) - len(good)),
        cpu,
        ms(level.headers(0.5)),
    )
    return "| " + " | ".join(cells) + " |"


async def measure(targets: list[Target], levels: list[int], seconds: float) -> None:
    print(
        "| target | clients | first token p50 / p99 ms | added p50 / p99 ms | end p50 / p99 ms "
        "| turns/s | errors | CPU s / 1k tokens | headers p50 ms |"
    )
    print("|---|---|---|---|---|---|---|---|---|")
    for clients in levels:
        direct: Level | None = None
        for target in targets:
            level = await run_level(target, clients, seconds)
            direct = level if target.name == "direct" else direct
            print(row(level, direct), flush=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("mode", nargs="?", default="bench", choices=("bench", "fake"))
    parser.add_argument("--port", type=int, default=0, help="fake: the port to serve on")
    parser.add_argument("--tokens", type=int, default=TOKENS, help="fake: tokens an answer streams")
    parser.add_argument("--clients", default="1,10,50,200", help="levels of concurrency, comma-separated")
    parser.add_argument("--seconds", type=float, default=12.0, help="closed-loop time at each level and target")
    parser.add_argument("--no-litellm", action="store_true", help="leave the LiteLLM proxy out")
    parser.add_argument("--targets", default="direct,parley,parley-sse,litellm")
    args = parser.parse_args(argv)
    if args.mode == "fake":
        asyncio.run(_serve_fake(args.port, args.tokens))
        return 0
    levels = [int(level) for level in args.clients.split(",")]
    wanted = args.targets.split(",")
    litellm = None if args.no_litellm or "litellm" not in wanted else install_litellm()
    print("\n".join(machine()), flush=True)
    with fake_model() as (fake_port, fake), parley(fake_port) as (platform, collection_id):
        assert platform.secrets is not None
        auth = {"Authorization": f"Bearer {platform.secrets.admin_api_key}"}
        openai_body = {
            "messages": [{"role": "user", "content": QUESTION}],
            "stream": True,
            "max_tokens": 200,
            "stream_options": {"include_usage": True},
        }
        services = {child.process.pid for child in platform.children.values() if child.process is not None}
        parley_pids = with_descendants(services | processes_under(platform.data_dir))
        targets = [
            Target(
                "direct",
                f"http://127.0.0.1:{fake_port}/v1/chat/completions",
                {**openai_body, "model": "paced"},
                {},
                lambda: {fake.pid},
            ),
            Target(
                "parley",
                f"{platform.gateway_url}/v1/chat/completions",
                {**openai_body, "model": f"parley/{collection_id}@compatible/paced"},
                auth,
                lambda: parley_pids,
            ),
            Target(
                "parley-sse",
                f"{platform.gateway_url}/v1/chat",
                {
                    "message": QUESTION,
                    "collection_ids": [collection_id],
                    "stream": True,
                    "provider": "compatible",
                    "model": "paced",
                    "max_tokens": 200,
                },
                auth,
                lambda: parley_pids,
                sse=True,
            ),
            Target(
                "parley-local",
                f"{platform.gateway_url}/v1/chat/completions",
                {**openai_body, "model": f"parley/{collection_id}@local/local"},
                auth,
                lambda: parley_pids,
            ),
        ]
        targets = [target for target in targets if target.name in wanted]
        with contextlib.ExitStack() as stack:
            proxy = None
            if litellm is not None:
                try:
                    port, proxy = stack.enter_context(litellm_proxy(litellm, fake_port))
                except RuntimeError as error:
                    print(f"(the LiteLLM proxy did not start: {error}; its rows are left out)", flush=True)
            if proxy is not None:
                proxy_pids = with_descendants({proxy.pid})
                targets.append(
                    Target(
                        "litellm",
                        f"http://127.0.0.1:{port}/v1/chat/completions",
                        {**openai_body, "model": "paced"},
                        {"Authorization": f"Bearer {LITELLM_KEY}"},
                        lambda: proxy_pids,
                    )
                )
            asyncio.run(measure(targets, levels, args.seconds))
    return 0


if __name__ == "__main__":
    sys.exit(main())
