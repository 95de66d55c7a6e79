"""The web app in a real browser (Debian's chromium driven by Playwright) against the whole
platform: sign in, upload by drag and drop and watch it reach ready, a screenplay's pages, a
streamed answer and its citation, cancelling an answer mid-stream, the usage page.

The platform answers with Claude's wire format from the test's fake Anthropic server, which
streams at the pace a test asks for: a real model's answer takes seconds, which is what lets a
person press Cancel in the middle of one (the offline `local` model answers at once).
Screenshots of every page are kept in `.parley/screenshots/` (the README says so)."""

import os
import re
import shutil
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from parley.kit.devstack import Platform
from tests.fakes.anthropic_server import FakeAnthropic
from tests.fakes.scripting import Script

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
SCREENSHOTS = Path(__file__).resolve().parents[1] / ".parley" / "screenshots"
# Debian's build, headless, and quiet: nothing of its own fetched from the network.
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]

if not Path(CHROMIUM).exists():
    # CI installs chromium (.ci/run): there a missing browser is a failure, not a skip.
    if os.environ.get("CI"):
        raise RuntimeError(f"no chromium at {CHROMIUM}: .ci/run installs it with apt-get")
    pytest.skip(
        f"no chromium at {CHROMIUM}: install Debian's (apt-get install chromium) to run the browser tests",
        allow_module_level=True,
    )

from playwright.sync_api import Browser, Page, expect, sync_playwright  # noqa: E402

from tests.platforms import chat_usage_recorded, eventually, running_platform  # noqa: E402
from tests.samples import NOTES, SCRIPT  # noqa: E402

SLOW_ANSWER = " ".join(["The lighthouse keeper left the keys under the mat [1]."] * 20)


@pytest.fixture(scope="module")
def claude() -> Iterator[FakeAnthropic]:
    with FakeAnthropic() as fake:
        yield fake


@pytest.fixture(scope="module")
def web(tmp_path_factory: pytest.TempPathFactory, claude: FakeAnthropic) -> Iterator[Platform]:
    settings = {
        "PARLEY_EMBEDDING_PROVIDER": "local",
        "PARLEY_DEFAULT_PROVIDER": "anthropic",
        "PARLEY_ANTHROPIC_API_KEY": claude.api_key,
        "PARLEY_ANTHROPIC_BASE_URL": claude.base_url,
    }
    with running_platform(tmp_path_factory.mktemp("parley-web"), settings) as started:
        yield started


@pytest.fixture(scope="module")
def key(web: Platform) -> str:
    assert web.secrets is not None
    return web.secrets.admin_api_key


@pytest.fixture(scope="module")
def api(web: Platform, key: str) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=web.gateway_url, headers={"Authorization": f"Bearer {key}"}, timeout=30) as client:
        yield client


@pytest.fixture(scope="module")
def script(api: httpx.Client) -> dict[str, Any]:
    """A collection with the screenplay in it, ready (uploaded through the API: the upload
    through the page is its own test)."""
    collection = api.post("/v1/collections", json={"name": f"night-shift-{uuid.uuid4().hex[:6]}"}).json()
    uploaded = api.post(
        f"/v1/collections/{collection['id']}/documents", files={"file": ("night.fountain", SCRIPT.encode(), "")}
    )
    assert uploaded.status_code == 202, uploaded.text
    with api.stream("GET", f"/v1/documents/{uploaded.json()['id']}/events") as events:
        for line in events.iter_lines():
            if '"status":"ready"' in line.replace(" ", ""):
                break
    return {"collection": collection, "document": api.get(f"/v1/documents/{uploaded.json()['id']}").json()}


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield launched
        launched.close()


@pytest.fixture
def page(browser: Browser, web: Platform) -> Iterator[Page]:
    context = browser.new_context(base_url=web.gateway_url, viewport={"width": 1280, "height": 860})
    opened = context.new_page()
    # Nothing may be fetched from anywhere but the gateway.
    foreign: list[str] = []
    opened.on(
        "request",
        lambda request: (
            foreign.append(request.url) if not request.url.startswith((web.gateway_url, "data:", "blob:")) else None
        ),
    )
    yield opened
    context.close()
    assert foreign == [], f"the page fetched from elsewhere: {foreign}"


def sign_in(page: Page, key: str) -> None:
    page.goto("/")
    page.get_by_label("API key").fill(key)
    page.get_by_role("button", name="Sign in").click()
    expect(page.get_by_role("heading", name="Collections", level=1)).to_be_visible()


def shoot(page: Page, name: str, *, full_page: bool = True) -> None:
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SCREENSHOTS / f"{name}.png"), full_page=full_page)


def test_sign_in_refuses_a_wrong_key_and_keeps_the_right_one_for_the_tab_only(page: Page, key: str) -> None:
    page.goto("/")
    shoot(page, "sign-in")
    page.get_by_label("API key").fill("pk_not-a-key")
    page.get_by_role("button", name="Sign in").click()
    expect(page.get_by_role("alert")).to_contain_text("the credential is not valid")
    expect(page.get_by_role("alert")).to_contain_text("unauthenticated, request ")

    sign_in(page, key)
    assert page.evaluate("sessionStorage.getItem('parley.apiKey')") == key
    assert page.evaluate("localStorage.length") == 0
    assert page.context.cookies() == []
    # A new tab is a new session: signed out.
    other = page.context.new_page()
    other.goto(page.url)
    expect(other.get_by_label("API key")).to_be_visible()
    other.close()


def test_dropped_files_upload_together_and_each_bar_reaches_ready(page: Page, key: str) -> None:
    sign_in(page, key)
    name = f"pilot-{uuid.uuid4().hex[:6]}"
    page.get_by_label("Name").fill(name)
    page.get_by_label("Description").fill("the pilot and its notes")
    page.get_by_role("button", name="Create collection").click()
    expect(page.get_by_role("heading", name=name, level=1)).to_be_visible()

    # Two files dropped at once, as a person drags them from their desktop.
    dropped = page.evaluate_handle(
        """([script, notes]) => {
            const transfer = new DataTransfer();
            transfer.items.add(new File([script], "night.fountain"));
            transfer.items.add(new File([notes], "notes.md", {type: "text/markdown"}));
            transfer.items.add(new File([""], "empty.txt", {type: "text/plain"}));
            return transfer;
        }""",
        [SCRIPT, NOTES],
    )
    page.dispatch_event("#dropzone", "drop", {"dataTransfer": dropped})

    uploads = page.get_by_role("list", name="Uploads").get_by_role("listitem")
    expect(uploads).to_have_count(3)
    # The empty file is refused at once, with the reason and the request id to quote.
    refused = uploads.filter(has_text="empty.txt")
    expect(refused).to_have_class(re.compile(r"\bfailed\b"))
    expect(refused).to_contain_text("(invalid_argument, request ")
    for upload in uploads.filter(has_not_text="empty.txt").all():
        expect(upload.locator(".stage")).to_have_text("ready", timeout=60_000)
        expect(upload.get_by_role("progressbar")).to_have_attribute("value", "100")
    documents = page.get_by_role("table").get_by_role("row")
    expect(documents.filter(has_text="The Night Shift")).to_contain_text("screenplay")
    expect(documents.filter(has_text="Production notes")).to_contain_text("ready")
    shoot(page, "collection")

    # A new version of the notes: the sections compared, and its own bar to ready.
    notes = documents.filter(has_text="Production notes")
    notes.locator("input[type=file]").set_input_files(
        files=[
            {
                "name": "notes.md",
                "mimeType": "text/markdown",
                "buffer": (NOTES + "Parking is behind the cafe.\n").encode(),
            }
        ]
    )
    expect(page.get_by_role("status")).to_contain_text("Production notes: version 2 (0 added, 1 changed, 0 removed)")
    expect(uploads).to_have_count(4)
    expect(uploads.first.locator(".stage")).to_have_text("ready", timeout=60_000)
    expect(notes.get_by_role("cell").nth(2)).to_have_text("2")  # the version column

    # Deleting asks first.
    page.once("dialog", lambda dialog: dialog.accept())
    notes.get_by_role("button", name="Delete").click()
    expect(documents.filter(has_text="Production notes")).to_have_count(0)
    expect(documents.filter(has_text="The Night Shift")).to_have_count(1)

    # Without a mouse: the "choose files" control opens the file picker from the keyboard.
    with page.expect_file_chooser() as chooser:
        page.get_by_role("button", name="choose files").press("Enter")
    chooser.value.set_files(
        files=[
            {"name": "more.md", "mimeType": "text/markdown", "buffer": b"# More notes\n\nThe van waits at the pier.\n"}
        ]
    )
    expect(documents.filter(has_text="More notes")).to_contain_text("ready", timeout=60_000)


def test_many_files_dropped_at_once_all_reach_ready(page: Page, key: str, api: httpx.Client) -> None:
    collection = api.post("/v1/collections", json={"name": f"many-{uuid.uuid4().hex[:6]}"}).json()
    sign_in(page, key)
    page.goto(f"/#/collections/{collection['id']}")
    dropped = page.evaluate_handle(
        """() => {
            const transfer = new DataTransfer();
            for (let i = 1; i <= 9; i++) {
                transfer.items.add(new File([`# Memo ${i}\\n\\nThe van leaves at ${i} o'clock.\\n`], `memo-${i}.md`));
            }
            return transfer;
        }"""
    )
    page.dispatch_event("#dropzone", "drop", {"dataTransfer": dropped})
    uploads = page.get_by_role("list", name="Uploads").get_by_role("listitem")
    expect(uploads).to_have_count(9)
    expect(uploads.locator(".stage").filter(has_text="ready")).to_have_count(9, timeout=60_000)
    expect(page.get_by_role("table").get_by_role("row").filter(has_text="Memo")).to_have_count(9)


def test_a_screenplay_page_shows_scenes_cards_characters_and_pacing(
    page: Page, key: str, script: dict[str, Any]
) -> None:
    sign_in(page, key)
    page.get_by_role("link", name=script["collection"]["name"]).click()
    page.get_by_role("link", name="The Night Shift").click()
    expect(page.get_by_role("heading", name="The Night Shift", level=1)).to_be_visible()
    expect(page.locator(".facts").first).to_contain_text("partial")  # three scenes: scene cards

    scenes = page.get_by_role("tabpanel", name="Scenes")
    expect(scenes.get_by_role("heading", level=3)).to_have_text(
        ["1. INT. DINER - NIGHT", "2. EXT. PARKING LOT - DAY", "3. INT. CAR - NIGHT"]
    )
    expect(scenes.locator("#scene-1")).to_contain_text("Rain against the glass")  # its card
    expect(scenes.locator("#scene-1 .hint").first).to_have_text("page 1 · 42 tokens · ANNA, BEN")  # from its section
    shoot(page, "screenplay-scenes")

    page.get_by_role("tab", name="Characters").click()
    characters = page.get_by_role("tabpanel", name="Characters")
    anna = characters.get_by_role("row", name=re.compile(r"^ANNA "))
    expect(anna.get_by_role("cell").first).to_have_text("3")  # speaks in 3 scenes
    expect(anna).to_contain_text("BEN (3)")  # most often with Ben, in 3 scenes
    # Arrow keys move between the tabs, as in any tab list.
    page.get_by_role("tab", name="Characters").press("ArrowRight")
    pacing = page.get_by_role("tabpanel", name="Pacing")
    expect(pacing).to_be_visible()
    expect(pacing.locator("svg.bars").first.locator("rect")).to_have_count(3)
    expect(pacing).to_contain_text("Day / night / other")
    shoot(page, "screenplay-pacing")


def test_an_answer_streams_in_and_its_citation_opens_the_passage(
    page: Page, key: str, script: dict[str, Any], claude: FakeAnthropic
) -> None:
    claude.script(Script(answer="The keys are under the mat, where the lighthouse keeper left them [1]."))
    sign_in(page, key)
    page.get_by_role("link", name="Chat").click()
    page.get_by_role("checkbox", name=script["collection"]["name"]).check()
    page.get_by_role("textbox", name="Message").fill("Where did the lighthouse keeper leave the keys?")
    page.get_by_role("button", name="Send").click()

    answer = page.locator(".message.assistant").last
    expect(answer.locator(".text")).to_contain_text("under the mat", timeout=30_000)
    expect(answer.get_by_role("list", name="Sources")).to_contain_text("The Night Shift")
    # The conversation has its own address and is listed.
    expect(page).to_have_url(re.compile(r"#/chat/[0-9a-f-]+$"))
    expect(page.get_by_role("navigation", name="Conversations").get_by_role("link")).not_to_have_count(0)

    # The conversation downloads as Markdown, the question and the answer in it.
    with page.expect_download() as exported:
        page.get_by_role("button", name="Export Markdown").click()
    assert exported.value.suggested_filename.endswith(".md"), exported.value.suggested_filename
    markdown = Path(exported.value.path()).read_text()
    assert "Where did the lighthouse keeper leave the keys?" in markdown and "under the mat" in markdown

    answer = page.locator(".message.assistant").last
    answer.get_by_text("Context report").click()
    report = answer.locator(".report")
    expect(report).to_contain_text("claude-sonnet-4-6")
    expect(report).to_contain_text("Tokens per part of the prompt")
    expect(report).to_contain_text("conversation")  # the parts, in prompt order
    expect(report).to_contain_text("passages")

    answer.get_by_role("button", name="Source 1: The Night Shift").first.click()
    passage = page.get_by_role("dialog")
    expect(passage).to_contain_text("The Night Shift")
    expect(passage.locator("blockquote")).to_contain_text("lighthouse keeper left them under the mat")
    shoot(page, "chat-citation", full_page=False)  # a modal over the page: what the screen shows
    cited = passage.locator(".heading").inner_text()
    passage.get_by_role("link", name="Open it in the document").click()
    # The script opens at the cited scene, marked and focused.
    expect(page.get_by_role("heading", name="The Night Shift", level=1)).to_be_visible()
    expect(page.locator(".scene.focused h3")).to_contain_text(cited)
    expect(page.locator(".scene.focused")).to_be_focused()


def test_search_finds_the_scenes_where_a_character_speaks(page: Page, key: str, script: dict[str, Any]) -> None:
    sign_in(page, key)
    page.get_by_role("link", name="Search").click()
    page.get_by_role("checkbox", name=script["collection"]["name"]).check()
    page.get_by_label("Search for").fill("keys lighthouse")
    page.get_by_label("Match by").select_option("keyword")
    page.get_by_label("Scenes where these speak").fill("ben")
    page.get_by_role("button", name="Search").click()

    results = page.get_by_role("list", name="Results").get_by_role("listitem")
    expect(results.first).to_contain_text("The Night Shift")
    expect(results.first.locator("mark").first).to_be_visible()  # the matched words, marked
    for text in results.all_inner_texts():
        assert "BEN" in text, text  # every hit is a scene where Ben speaks
    shoot(page, "search")
    where = results.first.locator(".heading").inner_text().split(": ")[-1]
    results.first.get_by_role("link", name="The Night Shift").click()
    expect(page.locator(".scene.focused h3")).to_contain_text(where)


def test_cancel_stops_a_streaming_answer(page: Page, key: str, script: dict[str, Any], claude: FakeAnthropic) -> None:
    claude.script(Script(answer=SLOW_ANSWER, pace=0.25))
    sign_in(page, key)
    page.get_by_role("link", name="Chat").click()
    page.get_by_role("checkbox", name=script["collection"]["name"]).check()
    page.get_by_role("textbox", name="Message").fill("Tell me everything about the keys.")
    page.get_by_role("button", name="Send").click()

    streaming = page.locator(".message.assistant.streaming .text")
    expect(streaming).to_contain_text("lighthouse", timeout=30_000)
    expect(page.get_by_role("button", name="Send")).to_be_disabled()
    page.get_by_role("button", name="Cancel").click()

    answer = page.locator(".message.assistant").last
    expect(answer).to_contain_text("Cancelled.", timeout=30_000)
    expect(page.get_by_role("button", name="Cancel")).to_be_disabled()
    expect(page.get_by_role("button", name="Send")).to_be_enabled()
    # It stopped well before the end of the answer.
    assert answer.locator(".text").inner_text().count("[1]") < 20
    shoot(page, "chat-cancelled")


def test_two_tabs_on_one_conversation_both_stream_the_answer(
    browser: Browser, web: Platform, key: str, script: dict[str, Any], api: httpx.Client, claude: FakeAnthropic
) -> None:
    first = api.post("/v1/chat", json={"message": "Who drives?", "collection_ids": [script["collection"]["id"]]})
    assert first.status_code == 200, first.text
    conversation = first.json()["conversation_id"]
    context = browser.new_context(base_url=web.gateway_url, viewport={"width": 1280, "height": 860})
    try:
        asking, watching = context.new_page(), context.new_page()
        for tab in (asking, watching):
            sign_in(tab, key)
            tab.goto(f"/#/chat/{conversation}")
            expect(tab.locator(".message.assistant")).to_have_count(1)

        claude.script(Script(answer="Ben drives the car to the lighthouse before the tide turns [1].", pace=0.1))
        asking.get_by_role("textbox", name="Message").fill("Where do they drive?")
        asking.get_by_role("button", name="Send").click()

        # The other tab shows the question and its answer without asking anything and without a
        # reload: it joined the turn's stream (it may join late; the stream replays from the start).
        expect(watching.locator(".message.user").last).to_have_text("YouWhere do they drive?", timeout=30_000)
        for tab in (asking, watching):
            answer = tab.locator(".message.assistant").last
            expect(answer.locator(".text")).to_contain_text("before the tide turns", timeout=30_000)
            expect(answer.get_by_role("list", name="Sources")).to_contain_text("The Night Shift")
    finally:
        context.close()


def test_usage_page_shows_cost_and_tokens_by_model_and_kind(
    page: Page, key: str, script: dict[str, Any], api: httpx.Client
) -> None:
    asked = api.post(
        "/v1/chat", json={"message": "Who drives the car?", "collection_ids": [script["collection"]["id"]]}
    )
    assert asked.status_code == 200, asked.text
    # usage-svc records the turn's event from JetStream, a moment after the answer.
    eventually(lambda: chat_usage_recorded(api), within=30, what="the chat's usage event is recorded")
    sign_in(page, key)
    page.get_by_role("link", name="Usage").click()
    expect(page.get_by_role("heading", name="Usage", level=1)).to_be_visible()
    expect(page.locator(".facts")).to_contain_text("Budget left")
    expect(page.locator(".facts")).to_contain_text("no limit")
    by_model = page.get_by_role("table", name="Last 14 days by model")
    expect(by_model.get_by_role("row", name="claude-sonnet-4-6")).to_contain_text("$")
    by_kind = page.get_by_role("table", name="Last 14 days by kind")
    expect(by_kind).to_contain_text("chat")
    expect(page.get_by_role("img", name="Cost per day by model")).to_be_visible()
    shoot(page, "usage")

    # An admin sets the month's budget; what is left is counted against it; empty is no limit again.
    page.get_by_label("Monthly budget in USD (empty: no limit)").fill("5")
    page.get_by_role("button", name="Set budget").click()
    expect(page.get_by_role("status")).to_contain_text("Monthly budget set to $5.00.")
    expect(page.locator(".facts")).to_contain_text("of $5.00")
    assert api.get("/v1/budget").json() == {"monthly_limit_usd": 5.0}
    page.get_by_label("Monthly budget in USD (empty: no limit)").fill("")
    page.get_by_role("button", name="Set budget").click()
    expect(page.locator(".facts")).to_contain_text("no limit")
    assert api.get("/v1/budget").json() == {"monthly_limit_usd": None}


def test_pages_fit_a_phone(browser: Browser, web: Platform, key: str, script: dict[str, Any]) -> None:
    context = browser.new_context(base_url=web.gateway_url, viewport={"width": 390, "height": 844}, is_mobile=True)
    phone = context.new_page()
    try:
        sign_in(phone, key)
        for route, title in (
            ("#/chat", "New conversation"),
            ("#/people", "People and keys"),
            (f"#/documents/{script['document']['id']}", "The Night Shift"),  # last: the screenshot's
        ):
            phone.goto(f"/{route}")
            expect(phone.get_by_role("heading", name=title, level=1)).to_be_visible()
            # Nothing wider than the screen: no sideways scrolling of the page itself.
            assert phone.evaluate("document.documentElement.scrollWidth") <= 390
        shoot(phone, "phone-screenplay")
    finally:
        context.close()


def test_an_admin_adds_a_colleague_makes_her_a_key_sees_it_once_and_revokes_it(
    page: Page, key: str, api: httpx.Client, web: Platform
) -> None:
    sign_in(page, key)
    page.get_by_role("link", name="People and keys").click()
    expect(page.get_by_role("heading", name="People and keys", level=1)).to_be_visible()
    colleague = f"Dana {uuid.uuid4().hex[:6]}"
    page.get_by_label("Person's name").fill(colleague)
    page.get_by_label("Email (optional)").fill(f"{colleague.split()[1]}@example.com")
    page.get_by_label("Role", exact=True).select_option("member")
    page.get_by_role("button", name="Add person").click()
    people = page.get_by_role("table", name="People of the tenant")
    expect(people.get_by_role("row", name=re.compile(colleague))).to_contain_text("@example.com")
    expect(people.get_by_label(f"Role of {colleague}")).to_have_value("member")

    # Her key: made by the admin, read-only, for a month; the secret shown this once.
    page.get_by_label("Key name").fill("dana's laptop")
    page.get_by_label("For").select_option(label=f"{colleague} (member)")
    page.get_by_label("read").check()
    page.get_by_label("Expires").select_option("30")
    page.get_by_role("button", name="Make key").click()
    shown = page.get_by_role("alert").filter(has_text="you will not see it again")
    expect(shown).to_contain_text(f"New key “dana's laptop” for {colleague} (member)")
    secret = page.get_by_label("The new key").input_value()
    assert secret.startswith("pk_"), secret
    expect(page.get_by_label("The new key")).to_be_focused()
    shoot(page, "people-new-key")
    page.get_by_role("button", name="Copy").click()
    expect(page.get_by_role("status")).to_contain_text("The key is copied.")
    # The key works, as hers, with the one scope.
    me = httpx.get(f"{web.gateway_url}/v1/me", headers={"Authorization": f"Bearer {secret}"}).json()
    assert (me["user"]["name"], me["scopes"]) == (colleague, ["read"])
    page.get_by_role("button", name="I have stored it").click()
    expect(page.get_by_label("The new key")).to_have_count(0)
    assert secret not in page.content()  # gone from the page for good

    keys = page.get_by_role("table", name="Every key of the tenant")
    row = keys.get_by_role("row", name=re.compile("dana's laptop"))
    expect(row).to_contain_text(colleague)
    expect(row).to_contain_text(secret[:8])  # recognised by its prefix
    expect(row).to_contain_text("active")
    page.once("dialog", lambda dialog: dialog.accept())
    row.get_by_role("button", name=re.compile("^Revoke dana's laptop")).click()
    expect(page.get_by_role("status")).to_contain_text("“dana's laptop” is revoked.")
    expect(keys.get_by_role("row", name=re.compile("dana's laptop"))).to_contain_text("revoked")
    refused = httpx.get(f"{web.gateway_url}/v1/me", headers={"Authorization": f"Bearer {secret}"})
    assert refused.status_code == 401

    # A refusal is shown where it happened, with the request id: the tenant's one owner stays one.
    page.get_by_label("Role of owner").select_option("member")
    page.get_by_role("button", name="Change owner’s role").click()
    expect(page.get_by_role("alert").filter(has_text="Refused:")).to_contain_text(
        "Refused: a tenant keeps at least one owner (failed_precondition, request "
    )
    expect(page.get_by_label("Role of owner")).to_have_value("owner")

    # She leaves: removed, and her keys with her.
    page.once("dialog", lambda dialog: dialog.accept())
    people.get_by_role("button", name=f"Remove {colleague}").click()
    expect(people.get_by_role("row", name=re.compile(colleague))).to_have_count(0)
    assert colleague not in [user["name"] for user in api.get("/v1/users").json()["data"]]


def test_a_member_sees_only_her_own_keys_and_no_people(browser: Browser, web: Platform, api: httpx.Client) -> None:
    member = api.post("/v1/users", json={"name": f"Mo {uuid.uuid4().hex[:6]}", "role": "member"}).json()
    made = api.post("/v1/api-keys", json={"name": "mo's key", "user_id": member["id"]})
    assert made.status_code == 201, made.text
    api.post("/v1/api-keys", json={"name": "the owner's other key"})  # not hers: not shown to her
    context = browser.new_context(base_url=web.gateway_url, viewport={"width": 390, "height": 844}, is_mobile=True)
    phone = context.new_page()
    try:
        sign_in(phone, made.json()["key"])
        phone.goto("/#/people")
        expect(phone.get_by_role("heading", name="API keys", level=1)).to_be_visible()
        mine = phone.get_by_role("table", name="Your API keys")
        expect(mine.get_by_role("row", name=re.compile("mo's key"))).to_contain_text("(this sign-in)")
        expect(phone.get_by_text("the owner's other key")).to_have_count(0)
        expect(phone.get_by_role("heading", name="People")).to_have_count(0)
        expect(phone.get_by_role("table", name="Every key of the tenant")).to_have_count(0)
        expect(phone.get_by_label("For")).to_have_count(0)  # a key for herself only
        expect(phone.get_by_label("admin")).to_have_count(0)  # no scope her role cannot hold
        assert phone.evaluate("document.documentElement.scrollWidth") <= 390
        shoot(phone, "phone-keys")

        # Her own key, made and revoked by herself.
        phone.get_by_label("Key name").fill("mo's script")
        phone.get_by_role("button", name="Make key").click()
        expect(phone.get_by_label("The new key")).to_have_value(re.compile("^pk_"))
        phone.get_by_role("button", name="I have stored it").click()
        phone.once("dialog", lambda dialog: dialog.accept())
        mine.get_by_role("button", name=re.compile("^Revoke mo's script")).click()
        expect(mine.get_by_role("row", name=re.compile("mo's script"))).to_contain_text("revoked")

        # Revoking the key she is signed in with signs her out.
        phone.once("dialog", lambda dialog: dialog.accept())
        mine.get_by_role("button", name=re.compile("^Revoke mo's key")).click()
        expect(phone.get_by_role("heading", name="Sign in")).to_be_visible()
        assert phone.evaluate("sessionStorage.getItem('parley.apiKey')") is None
    finally:
        context.close()
