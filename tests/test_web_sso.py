"""Signing in to the web app with single sign-on, in a real browser against the whole platform and
a fake OpenID Connect provider the test serves (tests/fakes/identity_provider.py): the button
takes the person to the provider and back, the page exchanges the code through the gateway and
shows the collections as that person; an answer whose state is not the tab's is refused; an
expired or refused token sends the person back to sign-in saying why; signing out forgets it."""

import uuid
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from playwright.sync_api import Browser, Page, expect, sync_playwright

from parley.kit.devstack import Platform
from tests.fakes.identity_provider import FakeIdentityProvider
from tests.platforms import running_platform
from tests.samples import GRINDER
from tests.test_web_app import CHROMIUM, CHROMIUM_ARGS, shoot

CLIENT = "parley-web"


@pytest.fixture(scope="module")
def idp() -> Iterator[FakeIdentityProvider]:
    with FakeIdentityProvider(client_id=CLIENT) as provider:
        yield provider


@pytest.fixture(scope="module")
def web(tmp_path_factory: pytest.TempPathFactory, idp: FakeIdentityProvider) -> Iterator[Platform]:
    settings = {
        "PARLEY_EMBEDDING_PROVIDER": "local",
        "PARLEY_SSO_ISSUER": idp.issuer,
        "PARLEY_SSO_AUDIENCE": CLIENT,
        "PARLEY_SSO_CLIENT_ID": CLIENT,
        "PARLEY_SSO_DISPLAY_NAME": "Acme SSO",
    }
    with running_platform(tmp_path_factory.mktemp("parley-web-sso"), settings) as started:
        yield started


@pytest.fixture(scope="module")
def team(web: Platform, idp: FakeIdentityProvider) -> dict[str, Any]:
    """A tenant with a collection, and the provider signing in one of its people (never seen by
    Parley before)."""
    assert web.secrets is not None
    admin = {"Authorization": f"Bearer {web.secrets.admin_api_key}"}
    name = f"acme-{uuid.uuid4().hex[:6]}"
    made = httpx.post(f"{web.gateway_url}/v1/tenants", json={"name": name, "owner_name": "Olga"}, headers=admin)
    assert made.status_code == 201, made.text
    owner = {"Authorization": f"Bearer {made.json()['api_key']['key']}"}
    shelf = httpx.post(f"{web.gateway_url}/v1/collections", json={"name": "Acme's manuals"}, headers=owner)
    assert shelf.status_code == 201, shelf.text
    manual = httpx.post(
        f"{web.gateway_url}/v1/collections/{shelf.json()['id']}/documents",
        files={"file": ("grinder.md", GRINDER.encode(), "text/markdown")},
        headers=owner,
    )
    assert manual.status_code == 202, manual.text
    with httpx.stream("GET", f"{web.gateway_url}/v1/documents/{manual.json()['id']}/events", headers=owner) as events:
        for line in events.iter_lines():
            if '"status":"ready"' in line.replace(" ", ""):
                break
    idp.person = {"sub": f"ada-{uuid.uuid4().hex[:6]}", "name": "Ada Lovelace", "parley_tenant": name}
    return {"tenant": name, "collection": shelf.json()}


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield launched
        launched.close()


@pytest.fixture
def page(browser: Browser, web: Platform, idp: FakeIdentityProvider) -> Iterator[Page]:
    context = browser.new_context(base_url=web.gateway_url, viewport={"width": 1280, "height": 860})
    opened = context.new_page()
    # Nothing but the gateway, and the provider's sign-in page the person is sent to.
    foreign: list[str] = []
    allowed = (web.gateway_url, f"{idp.issuer}/authorize?", "data:", "blob:")
    opened.on("request", lambda request: None if request.url.startswith(allowed) else foreign.append(request.url))
    yield opened
    context.close()
    assert foreign == [], f"the page fetched from elsewhere: {foreign}"


def sign_in_with_sso(page: Page) -> None:
    page.goto("/#/collections")
    page.get_by_role("button", name="Sign in with Acme SSO").click()
    expect(page.get_by_role("heading", name="Collections", level=1)).to_be_visible()


def test_signing_in_with_sso_shows_the_collections_as_that_person(
    page: Page, idp: FakeIdentityProvider, team: dict[str, Any], web: Platform
) -> None:
    page.goto("/")
    expect(page.get_by_role("button", name="Sign in with Acme SSO")).to_be_visible()
    expect(page.get_by_role("navigation", name="Main")).to_be_hidden()  # nothing to navigate to yet
    shoot(page, "sign-in-sso")
    sign_in_with_sso(page)

    # The provider was asked for a code with PKCE (S256), a state and a nonce, for this app.
    asked = idp.authorizations[-1]
    assert asked["client_id"] == CLIENT and asked["redirect_uri"] == f"{web.gateway_url}/"
    assert asked["code_challenge_method"] == "S256" and len(asked["code_challenge"]) == 43
    assert asked["state"] and asked["nonce"] and asked["state"] != asked["nonce"]
    # The code was exchanged by the gateway (with the verifier), not by the page.
    assert idp.exchanges[-1]["code_verifier"] and idp.exchanges[-1]["redirect_uri"] == f"{web.gateway_url}/"

    expect(page.get_by_role("link", name=team["collection"]["name"])).to_be_visible()
    expect(page.locator("#who")).to_have_text("Ada Lovelace (member)")
    assert "code=" not in page.url and "state=" not in page.url
    assert page.evaluate("sessionStorage.getItem('parley.apiKey')").count(".") == 2
    assert page.evaluate("localStorage.length") == 0 and page.context.cookies() == []
    shoot(page, "collections-sso")

    page.get_by_role("button", name="Sign out").click()
    expect(page.get_by_role("button", name="Sign in with Acme SSO")).to_be_visible()
    assert page.evaluate("sessionStorage.getItem('parley.apiKey')") is None


def test_an_answer_whose_state_is_not_the_tab_s_is_refused(
    page: Page, idp: FakeIdentityProvider, team: dict[str, Any]
) -> None:
    page.goto("/")
    # A sign-in this tab started, answered with another state (a forged or replayed answer).
    with page.expect_request(lambda request: "/authorize?" in request.url):
        page.route(f"{idp.issuer}/authorize?*", lambda route: route.abort())
        page.get_by_role("button", name="Sign in with Acme SSO").click()
    exchanged = len(idp.exchanges)
    page.goto("/?code=stolen-code&state=not-this-tab-s")
    expect(page.get_by_role("alert")).to_contain_text("its state does not match")
    expect(page.get_by_label("API key")).to_be_visible()
    assert "code=" not in page.url
    assert page.evaluate("sessionStorage.getItem('parley.apiKey')") is None
    assert len(idp.exchanges) == exchanged  # the code never reached the provider


def test_an_expired_sign_in_returns_to_sign_in_saying_why(page: Page, team: dict[str, Any]) -> None:
    sign_in_with_sso(page)
    # The token's time is up (as the page knows it from the exchange): the next page says so.
    page.evaluate("sessionStorage.setItem('parley.expiresAt', String(Math.floor(Date.now() / 1000) - 1))")
    page.get_by_role("link", name="Usage").click()
    expect(page.get_by_role("alert")).to_contain_text("Your sign-in with Acme SSO has expired: sign in again.")
    assert page.evaluate("sessionStorage.getItem('parley.apiKey')") is None

    # A token the gateway no longer takes (the provider's keys rotated, say) does the same.
    sign_in_with_sso(page)
    page.evaluate("sessionStorage.setItem('parley.apiKey', 'eyJhbGciOiJSUzI1NiJ9.e30.c2ln')")
    page.get_by_role("link", name="Usage").click()
    expect(page.get_by_role("alert")).to_contain_text("Your sign-in with Acme SSO is no longer valid")
    expect(page.get_by_role("button", name="Sign in with Acme SSO")).to_be_visible()


def test_a_citation_shows_its_passage_whole(page: Page, team: dict[str, Any]) -> None:
    """As the person signed in with SSO (a member: may chat): the source's snippet is the first 280
    characters; the dialog shows the passage to its last words."""
    sign_in_with_sso(page)
    page.get_by_role("link", name="Chat").click()
    page.get_by_role("checkbox", name=team["collection"]["name"]).check()
    page.get_by_role("textbox", name="Message").fill("How are the conical burrs cleaned?")
    page.get_by_role("button", name="Send").click()
    answer = page.locator(".message.assistant").last
    expect(answer.get_by_role("list", name="Sources")).to_contain_text("Grinder manual", timeout=30_000)
    answer.get_by_role("button", name="Source 1: Grinder manual").first.click()
    quote = page.get_by_role("dialog").locator("blockquote")
    expect(quote).to_contain_text("never wash the burrs with water.")
    expect(quote).not_to_have_attribute("aria-busy", "true")
    shoot(page, "chat-citation-whole", full_page=False)
