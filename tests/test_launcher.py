"""The launcher of `make run` restarts a service that dies, as Kubernetes restarts a pod: with a
backoff that doubles up to a cap and starts over once the service has stayed up, saying why it
stopped and where its log is (real child processes); and it prints where each service listens,
serves its metrics and logs."""

import logging
import re
import signal
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest

from parley.kit.dev import describe
from parley.kit.devstack import (
    SERVICES,
    Backoff,
    Child,
    EmbeddedNats,
    Platform,
    Ports,
    SupervisedServer,
    free_port,
    wait_for_port,
)


@pytest.fixture
def launcher(tmp_path: Path) -> Iterator[Platform]:
    platform = Platform(tmp_path, backoff=Backoff(initial=0.2, cap=0.4, stable_after=1.0))
    platform.log_dir.mkdir(parents=True)
    try:
        yield platform
    finally:
        platform.stop()


def child(platform: Platform, name: str, code: str) -> Child:
    return Child(name, [sys.executable, "-c", code], {}, platform.log_dir / f"{name}.log")


def supervise_until(platform: Platform, done: Callable[[], bool], *, within: float = 15.0) -> None:
    deadline = time.monotonic() + within
    while not done():
        assert time.monotonic() < deadline, "the supervisor did not get there in time"
        platform.supervise_once()
        time.sleep(0.02)


def announced_delays(caplog: pytest.LogCaptureFixture, name: str) -> list[float]:
    return [
        float(match.group(1))
        for record in caplog.records
        if (match := re.search(rf"^{name} stopped .* restarting it in ([0-9.]+)s", record.getMessage()))
    ]


def test_a_service_that_keeps_crashing_is_restarted_with_a_doubling_capped_delay(
    launcher: Platform, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="parley.kit.devstack")
    crasher = child(launcher, "crasher", "import sys; print('boom', flush=True); sys.exit(3)")
    launcher.adopt(crasher)

    supervise_until(launcher, lambda: crasher.restarts == 3)

    assert announced_delays(caplog, "crasher") == [0.2, 0.4, 0.4]
    stopped = next(record.getMessage() for record in caplog.records if "crasher stopped" in record.getMessage())
    assert "exit code 3" in stopped
    assert str(crasher.log_path) in stopped
    # Every run wrote to the same log, which the message names.
    assert crasher.log_path.read_text().count("boom") >= 3


def test_the_delay_starts_over_once_the_service_stayed_up(launcher: Platform, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING, logger="parley.kit.devstack")
    # Up for longer than `stable_after` each time, then gone.
    steady = child(launcher, "steady", "import sys, time; time.sleep(1.2); sys.exit(1)")
    launcher.adopt(steady)

    supervise_until(launcher, lambda: steady.restarts == 2)

    assert announced_delays(caplog, "steady") == [0.2, 0.2]


def test_a_killed_service_is_reported_with_its_signal_and_restarted(
    launcher: Platform, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="parley.kit.devstack")
    sleeper = child(launcher, "sleeper", "import time; time.sleep(60)")
    launcher.adopt(sleeper)
    assert sleeper.process is not None
    first = sleeper.process
    first.send_signal(signal.SIGKILL)

    supervise_until(launcher, lambda: sleeper.restarts == 1)

    assert any("sleeper stopped (killed by SIGKILL)" in record.getMessage() for record in caplog.records)
    assert sleeper.process is not first and sleeper.process.poll() is None


def test_a_service_killed_on_purpose_stays_down_until_restarted(launcher: Platform) -> None:
    sleeper = child(launcher, "held", "import time; time.sleep(60)")
    launcher.adopt(sleeper)
    launcher.kill("held")
    for _ in range(20):
        launcher.supervise_once()
        time.sleep(0.02)
    assert sleeper.restarts == 0
    assert sleeper.process is not None and sleeper.process.poll() is not None


def test_the_embedded_nats_is_restarted_when_it_dies_and_said_so(
    launcher: Platform, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="parley.kit.devstack")
    nats = EmbeddedNats(tmp_path / "nats", port=free_port())
    nats.start()
    launcher.servers["nats"] = SupervisedServer("nats", nats)
    try:
        assert nats._process is not None
        nats._process.send_signal(signal.SIGKILL)  # a crash, not `kill_server`, which holds it down

        supervise_until(launcher, lambda: launcher.servers["nats"].restarts == 1)

        assert nats.alive()
        wait_for_port("127.0.0.1", nats.port, within=5)
        assert announced_delays(caplog, "nats") == [0.2]
        assert any("nats stopped (killed by SIGKILL)" in record.getMessage() for record in caplog.records)
    finally:
        nats.stop()


def test_make_run_prints_where_each_service_serves_its_metrics_and_logs(platform: Platform) -> None:
    printed = describe(platform)
    for name, serves, metrics, log_file in platform.endpoints():
        line = next(line for line in printed.splitlines() if line.split()[:1] == [name])
        assert serves in line and metrics in line and log_file.name in line
        scraped = httpx.get(metrics, timeout=5)
        assert scraped.status_code == 200, f"{name}: {metrics}"
        assert "# TYPE" in scraped.text
        assert log_file.stat().st_size > 0
    assert str(platform.log_dir) in printed


def test_the_operations_guide_gives_make_runs_real_ports() -> None:
    guide = (Path(__file__).resolve().parents[1] / "docs" / "operations.md").read_text()
    ports = Ports()
    for name in SERVICES:
        row = f"| `{name}` | gRPC `127.0.0.1:{ports.grpc[name]}` | `http://127.0.0.1:{ports.metrics[name]}/metrics` |"
        assert row in guide
    assert f"| `gateway` | HTTP `127.0.0.1:{ports.gateway}` | `http://127.0.0.1:{ports.gateway}/metrics` |" in guide
