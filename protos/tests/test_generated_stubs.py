"""The committed Python stubs are exactly what the .proto files generate."""

import subprocess
import sys
from pathlib import Path

CHECK = Path(__file__).resolve().parents[1] / "generate.py"


def test_committed_stubs_match_the_proto_files() -> None:
    result = subprocess.run([sys.executable, str(CHECK), "--check"], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
