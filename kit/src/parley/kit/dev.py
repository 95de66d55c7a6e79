"""`make run`: the whole platform on this machine, until Ctrl-C.

With no PARLEY_DATABASE_URL / PARLEY_NATS_URL it starts the embedded PostgreSQL and NATS,
with their data in PARLEY_DATA_DIR (default `.parley/`), which survives restarts.
"""

import os
import signal
import sys
import threading
from pathlib import Path

from parley.kit.devstack import Platform


def main() -> int:
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
    assert platform.secrets is not None
    print(f"\nParley is running at {platform.gateway_url}")
    print(f"  data and logs: {platform.data_dir}")
    if platform.secrets.first_start:
        print(f"  admin API key (shown once; also in {platform.data_dir / 'admin-key'}):")
        print(f"    {platform.secrets.admin_api_key}")
    else:
        print(f"  admin API key: in {platform.data_dir / 'admin-key'}")
    print("Press Ctrl-C to stop.\n", flush=True)
    try:
        while not stop.wait(1.0):
            dead = platform.first_dead_child()
            if dead is not None:
                print(f"{dead} stopped unexpectedly; see {platform.log_dir / (dead + '.log')}", file=sys.stderr)
                return 1
    finally:
        print("Stopping Parley…", flush=True)
        platform.stop()
        print("Stopped.", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
