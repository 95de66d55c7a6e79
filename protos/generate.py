"""Generate protos/src/parley/v1 from the .proto files, or (--check) fail when the committed
stubs differ from what they generate now.

Messages get .py + .pyi (protoc), services get _grpc.py (grpcio-tools) and a typed _grpc.pyi
(mypy-protobuf), so callers of a stub and implementers of a servicer are type-checked too.
"""

import filecmp
import shutil
import subprocess
import sys
import sysconfig
import tempfile
from pathlib import Path

PROTOS = Path(__file__).resolve().parent
COMMITTED = PROTOS / "src" / "parley" / "v1"


def generate(out: Path) -> None:
    sources = sorted(str(path.relative_to(PROTOS)) for path in (PROTOS / "parley" / "v1").glob("*.proto"))
    plugin = Path(sysconfig.get_path("scripts")) / "protoc-gen-mypy_grpc"
    subprocess.run(
        [
            sys.executable,
            "-m",
            "grpc_tools.protoc",
            "-I.",
            f"--plugin=protoc-gen-mypy_grpc={plugin}",
            f"--python_out={out}",
            f"--pyi_out={out}",
            f"--grpc_python_out={out}",
            f"--mypy_grpc_out={out}",
            *sources,
        ],
        cwd=PROTOS,
        check=True,
        capture_output=True,
    )


def main(check: bool) -> int:
    with tempfile.TemporaryDirectory() as out:
        generate(Path(out))
        fresh = Path(out) / "parley" / "v1"
        generated = sorted(path.name for path in fresh.iterdir())
        if not check:
            for name in generated:
                shutil.copyfile(fresh / name, COMMITTED / name)
            print(f"protos: wrote {len(generated)} files to {COMMITTED}")
            return 0
        committed = sorted(path.name for path in COMMITTED.iterdir() if path.name not in ("__init__.py", "py.typed"))
        _, mismatched, errors = filecmp.cmpfiles(fresh, COMMITTED, generated, shallow=False)
        drifted = sorted(set(mismatched) | set(errors) | (set(committed) ^ set(generated)))
    if drifted:
        print(f"generated stubs drifted from the .proto files: {', '.join(drifted)}", file=sys.stderr)
        print("did you forget to run `make protos`?", file=sys.stderr)
        return 1
    print(f"protos: {len(generated)} generated files match")
    return 0


if __name__ == "__main__":
    sys.exit(main(check="--check" in sys.argv[1:]))
