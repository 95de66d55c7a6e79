"""`parley`, the CLI, run as a person runs it (typer's CliRunner over the real command) against
the whole platform: ingest a folder, re-ingest it, a screenplay's scenes and characters, search,
chat and resume, export, usage as tables and CSV, and API errors as one line with a request id."""

import re
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from typer.testing import CliRunner, Result

from parley.cli.main import app
from parley.kit.devstack import Platform
from tests.platforms import chat_usage_recorded, eventually
from tests.samples import NOTES, SCRIPT


@pytest.fixture(scope="module")
def environment(platform: Platform, tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    assert platform.secrets is not None
    return {
        "PARLEY_URL": platform.gateway_url,
        "PARLEY_API_KEY": platform.secrets.admin_api_key,
        "XDG_CONFIG_HOME": str(tmp_path_factory.mktemp("config")),  # the ingest state file goes here
        "COLUMNS": "200",  # tables as wide as a laptop's terminal
    }


@pytest.fixture(scope="module")
def parley(environment: dict[str, str]) -> Iterator["Parley"]:
    yield Parley(environment)


class Parley:
    def __init__(self, environment: dict[str, str]) -> None:
        self.environment = environment
        self.runner = CliRunner()

    def __call__(self, *args: str, env: dict[str, str | None] | None = None, input: str | None = None) -> Result:
        result = self.runner.invoke(app, list(args), env=self.environment | (env or {}), input=input)
        # Whatever happens, a person never sees a traceback.
        assert "Traceback" not in result.output, result.output
        return result


@pytest.fixture(scope="module")
def folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("scripts")
    (root / "pilot").mkdir()
    (root / "pilot" / "night.fountain").write_text(SCRIPT)
    (root / "notes.md").write_text(NOTES)
    (root / "empty.txt").write_text("")  # ingestion refuses it: nothing to read
    (root / "cover.png").write_bytes(b"\x89PNG")  # not a readable ending: a folder's walk skips it
    return root


@pytest.fixture(scope="module")
def collection(parley: Parley, folder: Path) -> str:
    name = f"cli-{uuid.uuid4().hex[:6]}"
    result = parley("ingest", str(folder), "--collection", name)
    # One file refused: the run says so and exits 1, the others are in.
    assert result.exit_code == 1, result.output
    assert "3 files: 2 added, 0 changed, 0 unchanged, 1 failed" in result.output
    assert re.search(r"failed .*empty\.txt: .*\(400 invalid_argument, request id \w+\)", result.output), result.output
    return name


def test_ingesting_a_folder_again_sends_only_what_changed(parley: Parley, folder: Path, collection: str) -> None:
    (folder / "empty.txt").unlink()
    (folder / "pilot" / "night.fountain").write_text(SCRIPT + "\nEXT. LIGHTHOUSE - DAWN\n\nANNA\nFound it.\n")
    result = parley("ingest", str(folder), "--collection", collection)
    assert result.exit_code == 0, result.output
    assert "2 files: 0 added, 1 changed, 1 unchanged, 0 failed" in result.output
    assert "night.fountain" in result.output and "ready" in result.output

    listed = parley("collections")
    assert re.search(rf"{collection}\s.*\s2\s", listed.output), listed.output


def test_scenes_and_characters_of_a_screenplay_by_its_title(parley: Parley, collection: str) -> None:
    scenes = parley("scenes", "The Night Shift")
    assert scenes.exit_code == 0, scenes.output
    for heading in ("INT. DINER - NIGHT", "EXT. PARKING LOT - DAY", "INT. CAR - NIGHT", "EXT. LIGHTHOUSE - DAWN"):
        assert heading in scenes.output
    assert "4 scenes" in scenes.output

    characters = parley("characters", "The Night Shift")
    assert characters.exit_code == 0, characters.output
    anna = next(line for line in characters.output.splitlines() if "ANNA" in line and "BEN (" in line)
    assert re.search(r"ANNA\s*│\s*4\s*│", anna), characters.output


def test_search_lists_the_passages_that_match(parley: Parley, collection: str) -> None:
    result = parley("search", "harbour cafe", "--collection", collection, "-k", "3")
    assert result.exit_code == 0, result.output
    assert "Production notes" in result.output
    assert "Locations" in result.output


def test_chat_streams_an_answer_with_its_sources_then_resumes_and_exports(parley: Parley, collection: str) -> None:
    asked = parley("chat", "--collection", collection, "-m", "Where did the lighthouse keeper leave the keys?")
    assert asked.exit_code == 0, asked.output
    assert "under the mat" in asked.output
    assert re.search(r"\[1\] The Night Shift", asked.output), asked.output
    # Under the answer, the passages it cites, and only those.
    answer, _, listed = asked.output.partition("\n  [")
    for number in re.findall(r"^ *\[(\d+)\] ", "  [" + listed, re.MULTILINE):
        assert f"[{number}]" in answer, asked.output
    assert "local: " in asked.output  # the model and its tokens under the answer
    conversation = re.search(r"conversation ([0-9a-f-]{36})", asked.output)
    assert conversation, asked.output

    # Interactive: questions from stdin until an empty line.
    resumed = parley("chat", "--conversation", conversation[1], input="When is the diner shot?\n\n")
    assert resumed.exit_code == 0, resumed.output
    assert "resuming" in resumed.output and "2 messages" in resumed.output
    assert "Tuesdays" in resumed.output

    exported = parley("export", conversation[1])
    assert exported.exit_code == 0
    assert "Where did the lighthouse keeper leave the keys?" in exported.output
    assert "When is the diner shot?" in exported.output
    as_json = parley("export", conversation[1], "--format", "json")
    assert '"messages"' in as_json.output


def test_usage_as_a_table_and_as_csv(parley: Parley, collection: str, api: httpx.Client) -> None:
    parley("chat", "--collection", collection, "-m", "Who says keys?")
    # usage-svc records the turn's event from JetStream, a moment after the answer.
    eventually(lambda: chat_usage_recorded(api), within=30, what="the chat's usage event is recorded")
    table = parley("usage", "--by", "kind")
    assert table.exit_code == 0, table.output
    assert "chat" in table.output and "total" in table.output
    assert "this month:" in table.output and "no limit" in table.output

    csv = parley("usage", "--by", "model", "--csv")
    assert csv.exit_code == 0, csv.output
    lines = csv.output.strip().splitlines()
    assert (
        lines[0] == "model,events,input_tokens,output_tokens,cache_read_tokens,cache_write_tokens,total_tokens,cost_usd"
    )
    assert any(line.startswith("local,") for line in lines[1:]), lines


def test_errors_are_one_line_with_the_request_id(parley: Parley, collection: str) -> None:
    missing = parley("scenes", str(uuid.uuid4()))
    assert missing.exit_code == 1
    assert re.fullmatch(r"error: .*not found \(404 not_found, request id [0-9a-f]{32}\)\n", missing.output), (
        missing.output
    )

    refused = parley("collections", env={"PARLEY_API_KEY": "pk_wrong"})
    assert refused.exit_code == 1
    assert "the credential is not valid (401 unauthenticated, request id " in refused.output

    unreachable = parley("--url", "http://127.0.0.1:9", "collections")
    assert unreachable.exit_code == 1
    assert unreachable.output.startswith("error: cannot reach Parley at http://127.0.0.1:9")

    not_a_script = parley("characters", "Production notes")
    assert not_a_script.exit_code == 1
    assert "(409 failed_precondition, request id" in not_a_script.output


def test_the_url_and_key_come_from_the_config_file_when_neither_flag_nor_environment_gives_them(
    parley: Parley, environment: dict[str, str], tmp_path: Path
) -> None:
    config = tmp_path / "parley.toml"
    config.write_text(f'url = "{environment["PARLEY_URL"]}"\napi_key = "{environment["PARLEY_API_KEY"]}"\n')
    unset: dict[str, str | None] = {"PARLEY_URL": None, "PARLEY_API_KEY": None, "PARLEY_CONFIG": str(config)}
    assert parley("collections", env=unset).exit_code == 0

    # A flag wins over the file.
    flagged = parley("--key", "pk_from-the-flag", "collections", env=unset)
    assert flagged.exit_code == 1 and "(401 unauthenticated" in flagged.output

    config.write_text("url = [not toml")
    broken = parley("collections", env=unset)
    assert broken.exit_code == 1 and broken.output.startswith(f"error: cannot read the config file {config}")


def test_keys_are_made_shown_once_listed_by_prefix_and_revoked(
    parley: Parley, environment: dict[str, str], platform: Platform
) -> None:
    made = parley("keys", "create", "ci reader", "--scope", "read", "--expires", "30d")
    assert made.exit_code == 0, made.output
    secret = made.stdout.strip()  # the secret alone on stdout, for a script to keep
    assert re.fullmatch(r"pk_\S+", secret), made.stdout
    assert "you will not see it again" in made.stderr and "scopes read, until " in made.stderr
    headers = {"Authorization": f"Bearer {secret}"}
    me = httpx.get(f"{platform.gateway_url}/v1/me", headers=headers).json()
    assert me["scopes"] == ["read"]

    listed = parley("keys", "list")
    assert listed.exit_code == 0, listed.output
    row = next(line for line in listed.output.splitlines() if "ci reader" in line)
    assert secret[:8] in row and "active" in row and secret not in listed.output
    key_id = re.search(r"[0-9a-f]{8}-[0-9a-f-]{27}", row)
    assert key_id, row
    # The key itself, read-only, may list (its own keys) but not make a key with more than it holds.
    as_reader = {"PARLEY_API_KEY": secret}
    assert "(this key)" in parley("keys", "list", env=as_reader).output
    wider = parley("keys", "create", "sneaky", "--scope", "write", env=as_reader)
    assert wider.exit_code == 1
    assert re.fullmatch(
        r"error: .*at most these scopes: read \(403 forbidden, request id [0-9a-f]{32}\)\n", wider.output
    )

    revoked = parley("keys", "revoke", key_id[0])
    assert revoked.exit_code == 0, revoked.output
    assert "revoked" in next(line for line in parley("keys", "list").output.splitlines() if "ci reader" in line)
    assert httpx.get(f"{platform.gateway_url}/v1/me", headers=headers).status_code == 401
    again = parley("keys", "revoke", str(uuid.uuid4()))
    assert again.exit_code == 1 and "(404 not_found, request id " in again.output
    bad = parley("keys", "create", "later", "--expires", "someday")
    assert bad.exit_code == 1 and bad.output.startswith("error: --expires 'someday': give 30d")


def test_an_admin_adds_a_person_gives_her_a_key_and_removes_her(parley: Parley, platform: Platform) -> None:
    name = f"Ines {uuid.uuid4().hex[:6]}"
    added = parley("users", "add", name, "--role", "viewer", "--email", f"{name.split()[1]}@example.com")
    assert added.exit_code == 0 and f"added {name} as viewer" in added.output, added.output
    assert name in parley("users", "list").output

    made = parley("keys", "create", "ines's laptop", "--user", name)
    assert made.exit_code == 0, made.output
    secret = made.stdout.strip()
    assert "scopes read," in made.stderr  # all a viewer may hold
    listed = parley("keys", "list").output
    assert name in next(line for line in listed.splitlines() if "ines's laptop" in line)

    # She sees no one else: the people are an admin's.
    refused = parley("users", "list", env={"PARLEY_API_KEY": secret})
    assert refused.exit_code == 1 and "(403 forbidden, request id " in refused.output

    assert parley("users", "role", name, "member").output.strip() == f"{name} is now member"
    assert parley("users", "remove", name).exit_code == 0
    assert name not in parley("users", "list").output
    assert httpx.get(f"{platform.gateway_url}/v1/me", headers={"Authorization": f"Bearer {secret}"}).status_code == 401
