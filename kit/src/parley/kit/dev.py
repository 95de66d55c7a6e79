"""`make run`: the whole platform on this machine, until Ctrl-C.

With no PARLEY_DATABASE_URL / PARLEY_NATS_URL it starts the embedded PostgreSQL and NATS,
with their data in PARLEY_DATA_DIR (default `.parley/`), which survives restarts. A service that
dies is restarted with backoff (see `devstack.Backoff`), and the launcher says so here.
"""

import logging
import os
import signal
import sys
import threading
from pathlib import Path

from parley.kit.devstack import Platform


def main() -> int:
    # The supervisor's restarts are the launcher's own news: plain lines on the terminal.
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s", datefmt="%H:%M:%S")
    # Only the launcher's own lines: the embedded PostgreSQL's and httpx's INFO chatter is not news.
    for chatty in ("pgserver", "httpx", "httpcore"):
        logging.getLogger(chatty).setLevel(logging.WARNING)
    platform = Platform(Path(os.environ.get("PARLEY_DATA_DIR", ".parley")))
    stop = threading.Event()
    # SIGHUP too: closing the terminal must stop the services, which run in sessions of their own.
    for signum in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        signal.signal(signum, lambda *_: stop.set())
    print("Starting Parley (PostgreSQL, NATS, usage, retrieval, ingestion, chat, gateway)…", flush=True)
    try:
        platform.start()
    except Exception as error:  # noqa: BLE001 - the launcher reports and exits
        print(f"Parley did not start: {error}", file=sys.stderr)
        return 1
    print(describe(platform))
    print("Press Ctrl-C to stop.\n", flush=True)
    try:
        # The supervisor thread restarts what dies; this thread only waits for Ctrl-C.
        while not stop.wait(1.0):
            pass
    finally:
        print("Stopping Parley…", flush=True)
        platform.stop()
        print("Stopped.", flush=True)
    return 0


def describe(platform: Platform) -> str:
    """What a developer needs to find: the URL, the admin key, and each service's ports and log."""
    assert platform.secrets is not None
    lines = [f"\nParley is running at {platform.gateway_url}", f"  data: {platform.data_dir}"]
    key_file = platform.data_dir / "admin-key"
    if platform.secrets.first_start:
        lines += [
            f"  owner API key (the installation's; shown once, also in {key_file}):",
            f"    {platform.secrets.admin_api_key}",
        ]
    else:
        lines.append(f"  owner API key: in {key_file}")
    lines.append(f"  logs: {platform.log_dir}/<service>.log")
    for name, serves, metrics, log_file in platform.endpoints():
        lines.append(f"  {name:<10} {serves:<24} metrics {metrics:<36} log {log_file.name}")
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
