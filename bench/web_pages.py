"""The web app's pages in headless chromium, with a 190-scene screenplay: how long from asking
for a page to its content on screen. `.venv/bin/python bench/run.py --only web_pages`.

A platform started as `make run` starts it (temporary folder, free ports, the hashing embedder:
the page does not depend on which model embedded the chunks), one screenplay of 190 scenes built
from the samples in ../shared/data/screenplays (as bench/ingest.py builds its feature script)
and left to reach `ready` with every artifact written, one answered question, then each page
loaded in a new tab of Debian's chromium: the time from `goto` until the page's last element is
there — the 190th scene card, the last table row, the answer. The tab is new each time; the
browser's cache keeps the app's files after the first load, as it would for a person.

Skipped, with a message, without ../shared/data or chromium.
"""

import os
import shutil
import time
import uuid
from collections.abc import Callable
from pathlib import Path

import httpx

from bench._common import Table, median, ms, p95
from bench.end_to_end import running_platform
from bench.ingest import DATA, SAMPLES, _scenes, _vary, _wait_ready

SCENES = 190
CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
        "--disable-component-update", "--disable-sync", "--no-first-run"]  # fmt: skip
STATIC = Path(__file__).resolve().parent.parent / "gateway" / "src" / "parley" / "gateway" / "webapp" / "static"


def screenplay(scenes: int = SCENES) -> str:
    """A Fountain script of exactly `scenes` scenes: the samples' scenes, copies renamed, in turn."""
    samples = [scene for name in SAMPLES for scene in _scenes((DATA / "screenplays" / name).read_text())]
    body = [_vary(samples[i % len(samples)], copy=i // len(samples) + 1, number=i + 1) for i in range(scenes)]
    return "Title: The Long Night\nAuthor: Parley bench\n\n" + "\n\n".join(body) + "\n"


def run(*, quick: bool = False) -> list[Table]:
    if not (DATA / "screenplays").is_dir():
        print(f"(web_pages: skipped, {DATA / 'screenplays'} is not there)", flush=True)
        return []
    if not Path(CHROMIUM).exists():
        print("(web_pages: skipped, no chromium: apt-get install chromium)", flush=True)
        return []
    from playwright.sync_api import Page, sync_playwright

    loads = 3 if quick else 10
    with running_platform({"PARLEY_EMBEDDING_PROVIDER": "local"}) as (platform, _):
        assert platform.secrets is not None
        key = platform.secrets.admin_api_key
        with httpx.Client(
            base_url=platform.gateway_url, headers={"Authorization": f"Bearer {key}"}, timeout=120
        ) as api:
            collection = api.post("/v1/collections", json={"name": f"bench-web-{uuid.uuid4().hex[:6]}"}).json()["id"]
            uploaded = api.post(
                f"/v1/collections/{collection}/documents",
                files={"file": ("long-night.fountain", screenplay().encode(), "text/x-fountain")},
            )
            uploaded.raise_for_status()
            document = uploaded.json()["id"]
            ready = _wait_ready(api, document)
            artifacts = len(api.get(f"/v1/documents/{document}/artifacts").json()["artifacts"])
            chat = api.post("/v1/chat", json={"message": "Who is at the birthday?", "collection_ids": [collection]})
            conversation = chat.json()["conversation_id"]

        pages: list[tuple[str, str, Callable[[Page], None]]] = [
            ("collections", "#/collections", lambda p: p.locator(".cards li").first.wait_for()),
            ("a collection (its documents)", f"#/collections/{collection}",
             lambda p: p.locator("tbody tr[data-document-id]").wait_for()),
            (f"the screenplay ({SCENES} scene cards, every report)", f"#/documents/{document}",
             lambda p: p.locator(".scene").nth(SCENES - 1).wait_for(state="attached")),
            ("a conversation", f"#/chat/{conversation}", lambda p: p.locator(".message.assistant").wait_for()),
            ("usage (14 days by model and kind)", "#/usage", lambda p: p.locator(".usage-group table").last.wait_for()),
        ]  # fmt: skip
        table = Table(
            f"web_pages — page load in headless chromium, a {SCENES}-scene screenplay",
            ("page", "n", "median ms", "p95 ms", "max ms"),
        )
        with sync_playwright() as playwright:
            browser = playwright.chromium.launch(executable_path=CHROMIUM, args=ARGS)
            context = browser.new_context(base_url=platform.gateway_url, viewport={"width": 1280, "height": 860})
            # Signed in as the sign-in form leaves it: the key in this tab's sessionStorage.
            context.add_init_script(f"sessionStorage.setItem('parley.apiKey', {key!r})")
            for name, route, shown in pages:
                samples: list[float] = []
                for _ in range(loads + 1):  # the first load fills the browser's cache: not counted
                    tab = context.new_page()
                    started = time.perf_counter()
                    tab.goto(f"/{route}")
                    shown(tab)
                    samples.append(time.perf_counter() - started)
                    tab.close()
                samples = samples[1:]
                table.add(name, len(samples), ms(median(samples)), ms(p95(samples)), ms(max(samples)))
            browser.close()
        load = os.getloadavg()[0]
        size = sum(path.stat().st_size for path in STATIC.rglob("*") if path.is_file())
        table.notes.extend(
            [
                f"the screenplay: {SCENES} scenes, {ready['chunk_count']} chunks, {artifacts} artifacts "
                f"(scene cards, outline, character sheets, plot threads), analysis `{ready['analysis_state']}`",
                f"the app's files: {size / 1024:.0f} KiB of HTML, CSS and JavaScript, no build, nothing from elsewhere",
                "time from `goto` in a new tab until the page's last element is in the DOM; the first load of "
                "each page (filling the browser's cache) is not counted",
                f"the 1-minute load average at the end: {load:.1f} (other work on the cores slows every page)",
            ]
        )
        return [table]
