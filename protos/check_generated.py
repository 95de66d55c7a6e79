"""Fail when protos/src/parley/v1 differs from what the .proto files generate now."""

import filecmp
import subprocess
import sys
import tempfile
from pathlib import Path

PROTOS = Path(__file__).resolve().parent
COMMITTED = PROTOS / "src" / "parley" / "v1"


def main() -> int:
    with tempfile.TemporaryDirectory() as out:
        sources = sorted(str(path.relative_to(PROTOS)) for path in (PROTOS / "parley" / "v1").glob("*.proto"))
        subprocess.run(
            [
                sys.executable,
                "-m",
                "grpc_tools.protoc",
                "-I.",
                f"--python_out={out}",
                f"--pyi_out={out}",
                f"--grpc_python_out={out}",
                *sources,
            ],
            cwd=PROTOS,
            check=True,
        )
        fresh = Path(out) / "parley" / "v1"
        generated = sorted(path.name for path in fresh.iterdir())
        committed = sorted(path.name for path in COMMITTED.iterdir() if path.name != "__init__.py")
        _, mismatched, errors = filecmp.cmpfiles(fresh, COMMITTED, generated, shallow=False)
        drifted = sorted(set(mismatched) | set(errors) | (set(committed) ^ set(generated)))
    if drifted:
        print(f"generated stubs drifted from the .proto files: {', '.join(drifted)}", file=sys.stderr)
        print("did you forget to run `make protos`?", file=sys.stderr)
        return 1
    print(f"protos: {len(generated)} generated files match")
    return 0


if __name__ == "__main__":
    sys.exit(main())
