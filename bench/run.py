"""Run Parley's benchmarks and print their figures: `make bench`, or
`.venv/bin/python bench/run.py [--quick] [--only NAME ...]`.

Every benchmark prints medians (and p95s) of repeated samples taken in this one run, under a
header naming the date, the machine and the Python. Nothing here passes or fails on time.
"""

import argparse
import importlib
import logging
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # `bench` as a package, from any folder

from bench._common import Table, machine

log = logging.getLogger("bench")
BENCHMARKS = ("chunking", "embedding", "prompt", "end_to_end", "ingest", "cache", "web_pages", "front_door")
IMPORT_RETRIES = 5
IMPORT_WAIT_SECONDS = 60.0


def _load(name: str) -> object:
    """The benchmark's module; a service module still being written gets a few minutes to appear."""
    for attempt in range(IMPORT_RETRIES):
        try:
            return importlib.import_module(f"bench.{name}")
        except ImportError as error:
            if attempt == IMPORT_RETRIES - 1:
                raise
            print(f"({name}: {error}; retrying in {IMPORT_WAIT_SECONDS:.0f}s)", flush=True)
            time.sleep(IMPORT_WAIT_SECONDS)
    raise AssertionError("unreachable")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--quick", action="store_true", help="fewer samples: a smoke run, not figures to record")
    parser.add_argument("--only", action="append", choices=BENCHMARKS, metavar="NAME", help=f"one of {BENCHMARKS}")
    args = parser.parse_args(argv)

    print("# Parley benchmarks" + (" (--quick)" if args.quick else ""))
    print()
    for line in machine():
        print(f"- {line}")
    print(f"- command: {' '.join([Path(sys.executable).name, *sys.argv])}")
    print(flush=True)
    failed: list[str] = []
    for name in args.only or BENCHMARKS:
        started = time.perf_counter()
        try:
            result = _load(name).run(quick=args.quick)  # type: ignore[attr-defined]
        except Exception:  # one broken benchmark should not hide the others' figures
            log.exception("%s failed", name)
            print(f"### {name}\n\nfailed: see the traceback above\n", flush=True)
            failed.append(name)
            continue
        for table in result if isinstance(result, list) else [result]:
            assert isinstance(table, Table)
            print(table.render())
            print()
        print(f"({name} took {time.perf_counter() - started:.1f} s)\n", flush=True)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
