"""The writers' room. The script in the prompt, once: a conversation over a screenplay gets its
outline, main characters' sheets and scene-card index at the front of every prompt
(global_context), a `global_question` answers from it without a search, and the second turn reads
it from Claude's cache. Tools: the model calls them in rounds (tool_loop), each round billed inside
the turn's one hold; `local` routes tool-shaped questions to them offline. TurnRunner on real
PostgreSQL and NATS; the Anthropic SDK against the fake; ingestion, retrieval and usage-svc as
in-test implementations of chat-svc's client Protocols."""

import json
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field

from nats.aio.client import Client as NatsClient
from nats.js.api import DeliverPolicy
from sqlalchemy import select

from parley.chat.clients import Hold
from parley.chat.config import Settings
from parley.chat.global_context import GlobalContexts, Script, render
from parley.chat.intent import IntentClassifier
from parley.chat.memory import Summarizer
from parley.chat.metering import attempt_event_id
from parley.chat.models import outbox
from parley.chat.providers import AnthropicProvider, LocalProvider, OpenAIProvider, ReliableProvider, RetryPolicy
from parley.chat.tools import Toolbox, route
from parley.chat.turn_context import TurnRequest
from parley.chat.turns import StartedTurn, TurnRunner
from parley.kit import db
from parley.kit.contracts import USAGE_RECORDED, turn_subject
from parley.kit.identity import Identity
from parley.kit.outbox import OutboxRelay
from parley.v1 import chat_pb2, common_pb2, events_pb2, ingestion_pb2, retrieval_pb2
from tests.fakes.anthropic_server import FakeAnthropic
from tests.fakes.openai_server import FakeOpenAI
from tests.fakes.scripting import Script as Step

LOCATIONS = ("RIVER", "CIRCUS", "SPECTRE", "HOSPITAL", "WAR ZONE", "BANK", "ORCHARD", "ROAD")


def screenplay(
    document_id: str, collection_id: str, scenes: int = 60
) -> tuple[ingestion_pb2.Document, list[ingestion_pb2.Artifact]]:
    """A script's document and the artifacts ingestion would have written for it (extractive shapes)."""
    document = ingestion_pb2.Document(
        id=document_id,
        collection_id=collection_id,
        title="Big Fish",
        status=ingestion_pb2.DOCUMENT_STATUS_READY,
        version=1,
        analysis_state="analyzed",
    )

    def artifact(kind: str, key: str, content: dict[str, object]) -> ingestion_pb2.Artifact:
        return ingestion_pb2.Artifact(
            id=str(uuid.uuid4()), document_id=document_id, kind=kind, key=key, content_json=json.dumps(content)
        )

    cards = [
        artifact(
            "scene_card",
            str(number),
            {
                "method": "extractive",
                "scene": str(number),
                "heading": f"EXT. {LOCATIONS[number % len(LOCATIONS)]} - DAY",
                "characters": ["EDWARD", "WILL"] if number % 3 else ["EDWARD", "THE WITCH"],
                "what_happens": f"Edward tells the tale of the {LOCATIONS[number % len(LOCATIONS)].lower()} "
                f"while Will listens, number {number}, and the night goes on and on.",
            },
        )
        for number in range(1, scenes + 1)
    ]
    outline = artifact(
        "outline",
        "outline",
        {
            "method": "extractive",
            "title": "Big Fish",
            "logline": {"title": "Big Fish", "main_characters": ["EDWARD", "WILL", "SANDRA"]},
            "central_conflict": {"characters": ["EDWARD", "WILL"], "shared_scenes": 40},
            "ending": "Will carries his dying father to the river, finishing the story himself.",
        },
    )
    sheets = [
        artifact("character_sheet", name, {"method": "extractive", "name": name, "scene_count": count})
        for name, count in (("EDWARD", 60), ("WILL", 40))
    ]
    return document, [*cards, outline, *sheets]


def scenes_of(artifacts: Sequence[ingestion_pb2.Artifact]) -> list[ingestion_pb2.Section]:
    """The scene sections the cards were written from."""
    sections = []
    for ordinal, card in enumerate(a for a in artifacts if a.kind == "scene_card"):
        content = json.loads(card.content_json)
        scene = ingestion_pb2.Scene(
            number=content["scene"],
            heading=content["heading"],
            characters=content["characters"],
            start_page=ordinal + 1,
        )
        text = f"{content['heading']}\n\n{content['what_happens']}"
        sections.append(
            ingestion_pb2.Section(ordinal=ordinal, kind="scene", heading=scene.heading, text=text, scene=scene)
        )
    return sections


@dataclass
class FakeScripts:
    """Ingestion as far as the global context reads it, counting its calls."""

    listed: dict[str, list[ingestion_pb2.Document]]
    held: dict[str, list[ingestion_pb2.Artifact]]
    artifact_calls: int = 0

    async def documents(self, identity: Identity, collection_id: str) -> list[ingestion_pb2.Document]:
        return self.listed.get(collection_id, [])

    async def artifacts(
        self, identity: Identity, document_id: str, kinds: Sequence[str] = ()
    ) -> list[ingestion_pb2.Artifact]:
        self.artifact_calls += 1
        return [a for a in self.held.get(document_id, []) if not kinds or a.kind in kinds]

    async def sections(self, identity: Identity, document_id: str) -> list[ingestion_pb2.Section]:
        return scenes_of(self.held.get(document_id, []))

    async def characters(self, identity: Identity, document_id: str) -> ingestion_pb2.CharactersReport:
        return ingestion_pb2.CharactersReport()

    async def pacing(self, identity: Identity, document_id: str) -> ingestion_pb2.PacingReport:
        return ingestion_pb2.PacingReport()


@dataclass
class NoSearch:
    """Retrieval that finds nothing and remembers being asked."""

    searches: list[str] = field(default_factory=list)

    async def search(
        self, identity: Identity, *, query: str, collection_ids: Sequence[str], k: int
    ) -> retrieval_pb2.SearchResponse:
        self.searches.append(query)
        return retrieval_pb2.SearchResponse()

    async def chunks(self, identity: Identity, chunk_ids: Sequence[str]) -> list[retrieval_pb2.ChunkHit]:
        return []

    async def neighbours(
        self, identity: Identity, *, document_id: str, ordinal: int, before: int, after: int
    ) -> list[retrieval_pb2.ChunkHit]:
        return []


class Owned:
    async def require(self, identity: Identity, collection_id: str) -> None:
        """Every collection is the caller's."""


@dataclass
class OpenBudget:
    holds: list[tuple[int, int]] = field(default_factory=list)  # input, output

    async def reserve(
        self,
        identity: Identity,
        *,
        provider: str,
        model: str,
        input_tokens: int,
        max_output_tokens: int,
        idempotency_key: str = "",
        fallbacks: Sequence[tuple[str, str]] = (),
    ) -> Hold:
        self.holds.append((input_tokens, max_output_tokens))
        return Hold(reservation_id=str(uuid.uuid4()), reserved_micros=0)

    async def release(self, identity: Identity, reservation_id: str) -> None:
        """Nothing held for real."""

    async def price(self, identity: Identity, *, provider: str, model: str, usage: common_pb2.TokenUsage) -> int:
        return 0


async def read_turn(nats_client: NatsClient, started: StartedTurn) -> list[events_pb2.TurnEvent]:
    subject = turn_subject(started.conversation_id, started.turn_id)
    subscription = await nats_client.jetstream().subscribe(
        subject, ordered_consumer=True, deliver_policy=DeliverPolicy.ALL
    )
    read: list[events_pb2.TurnEvent] = []
    try:
        while not read or read[-1].WhichOneof("kind") not in ("end", "error"):
            read.append(events_pb2.TurnEvent.FromString((await subscription.next_msg(timeout=5)).data))
    finally:
        await subscription.unsubscribe()
    return read


def runner(
    settings: Settings,
    sessions: db.Sessions,
    nats_client: NatsClient,
    scripts: FakeScripts,
    retrieval: NoSearch,
    budget: "OpenBudget | None" = None,
    **providers: object,
) -> TurnRunner:
    js = nats_client.jetstream()
    relay = OutboxRelay(sessions=sessions, table=outbox, js=js)
    return TurnRunner(
        settings=settings,
        sessions=sessions,
        nc=nats_client,
        js=js,
        retrieval=retrieval,
        collections=Owned(),
        budget=budget or OpenBudget(),
        providers={"local": LocalProvider(), **providers},  # type: ignore[dict-item]
        intents=IntentClassifier(model=None),
        memory=Summarizer(sessions=sessions, relay=relay, model=None, window=settings.history_messages),
        relay=relay,
        global_contexts=GlobalContexts(scripts=scripts),
        toolbox=Toolbox(scripts=scripts, retrieval=retrieval),
    )


def one_script(scenes: int = 60) -> tuple[str, FakeScripts]:
    """A fresh collection holding one screenplay of `scenes` scenes, and ingestion serving it."""
    collection_id, document_id = str(uuid.uuid4()), str(uuid.uuid4())
    document, artifacts = screenplay(document_id, collection_id, scenes=scenes)
    return collection_id, FakeScripts({collection_id: [document]}, {document_id: artifacts})


def writer(request_id: str) -> Identity:
    """A writer in a tenant of their own."""
    return Identity(tenant_id=str(uuid.uuid4()), user_id="writer", request_id=request_id)


def claude_on(anthropic_fake: FakeAnthropic) -> AnthropicProvider:
    """The Anthropic provider against the fake, Sonnet by default."""
    return AnthropicProvider(
        api_key=anthropic_fake.api_key, base_url=anthropic_fake.base_url, default_model="claude-sonnet-4-6"
    )


def ask(message: str, *, collection_id: str = "", conversation_id: str = "", provider: str = "") -> TurnRequest:
    return TurnRequest(
        conversation_id=conversation_id,
        collection_ids=(collection_id,) if collection_id else (),
        message=message,
        tier=chat_pb2.TIER_STANDARD,
        max_tokens=0,
        provider=provider,
        model="",
        intent="",
    )


def test_the_global_context_is_rendered_once_in_order_and_cut_at_the_end_of_the_index() -> None:
    document, artifacts = screenplay("doc-1", "col-1")
    whole = render([Script(document, tuple(artifacts))], budget=8_000)
    text = whole.text
    assert text.index("Outline:") < text.index("Main characters:") < text.index("Scene index")
    assert "- EDWARD: scene_count: 60" in text and "extractive" not in text, "how it was made is left out"
    assert "60 | EXT. WAR ZONE - DAY | EDWARD, THE WITCH |" in text and not whole.notes
    assert render([Script(document, tuple(artifacts))], budget=8_000).text == text, "the same bytes every turn"

    cut = render([Script(document, tuple(artifacts))], budget=900)
    assert cut.tokens <= 900 and "Outline:" in cut.text
    assert "list_scenes lists them" in cut.text and cut.notes[0].endswith("left out of the index")


async def test_a_global_question_answers_from_the_script_and_the_second_turn_reads_it_from_the_cache(
    settings: Settings, sessions: db.Sessions, nats_client: NatsClient, anthropic_fake: FakeAnthropic
) -> None:
    collection_id, scripts = one_script()
    retrieval = NoSearch()
    anthropic_fake.reset()
    anthropic_fake.forget_cache()
    claude = claude_on(anthropic_fake)
    turns = runner(settings, sessions, nats_client, scripts, retrieval, anthropic=claude)
    identity = writer("req-g")
    try:
        first = await turns.start(
            identity,
            ask("What theme does the ending land, overall?", collection_id=collection_id, provider="anthropic"),
        )
        read = await read_turn(nats_client, first)
        used = read[-2].usage.context_used
        assert (used.intent, used.retrieval) == ("global_question", "minimal")
        assert not any("no outline" in note for note in used.notes), "the outline exists: no fall-back"
        assert retrieval.searches == [], "the outline is the context: no search"
        parts = {part.name: part.tokens for part in used.parts}
        assert parts["global"] > 1_024, "a feature's index is worth caching"
        sent = anthropic_fake.received[-1].body
        assert "Scene index" in sent["system"][1]["text"] and "cache_control" in sent["system"][1]

        second = await turns.start(
            identity, ask("And the whole arc of WILL?", conversation_id=first.conversation_id, provider="anthropic")
        )
        read = await read_turn(nats_client, second)
        usage = read[-2].usage.usage
        assert usage.cache_read_tokens >= parts["global"], "the script is read from the cache on turn 2"
        assert scripts.artifact_calls == 1, "the artifacts of an unchanged document are read once"
    finally:
        await claude.close()


async def test_local_answers_a_global_question_from_the_outline(
    settings: Settings, sessions: db.Sessions, nats_client: NatsClient
) -> None:
    collection_id, scripts = one_script(scenes=12)
    turns = runner(settings, sessions, nats_client, scripts, NoSearch())
    identity = writer("req-l")
    started = await turns.start(identity, ask("How does the story end, overall?", collection_id=collection_id))
    read = await read_turn(nats_client, started)
    answer = "".join(event.delta.text for event in read if event.HasField("delta"))
    assert "carries his dying father to the river" in answer


def test_the_local_router_sends_tool_shaped_questions_to_their_tool() -> None:
    def routed(question: str) -> tuple[str, dict[str, object]] | None:
        call = route(question)
        return None if call is None else (call.name, call.arguments)

    assert routed("Which scenes does EDWARD appear in?") == ("get_character_scenes", {"character": "EDWARD"})
    assert routed("Which scenes feature the witch?") == ("get_character_scenes", {"character": "witch"})
    assert routed("What happens in scene 12?") == ("get_scene", {"scene": "12"})
    assert routed("What comes just before scene 12?") == ("get_scene_context", {"scene": "12"})
    assert routed("How is the pacing?") == ("analyze_pacing", {})
    assert routed("Why does Will resent his father?") is None


async def test_local_answers_which_scenes_a_character_is_in_with_the_tool_offline(
    settings: Settings, sessions: db.Sessions, nats_client: NatsClient
) -> None:
    collection_id, scripts = one_script(scenes=12)
    turns = runner(settings, sessions, nats_client, scripts, NoSearch())
    identity = writer("req-t")
    started = await turns.start(identity, ask("Which scenes feature the witch?", collection_id=collection_id))
    read = await read_turn(nats_client, started)

    kinds = [event.WhichOneof("kind") for event in read]
    assert kinds[:2] == ["tool_call", "tool_result"] and kinds[-1] == "end"
    result = read[1].tool_result
    assert (result.name, json.loads(result.input_json), result.round) == (
        "get_character_scenes",
        {"character": "witch"},
        1,
    )
    assert result.result.startswith("THE WITCH speaks in 4 of 12 scenes:") and "3 | EXT. CIRCUS" not in result.result
    assert "3 | EXT. HOSPITAL - DAY | page 3" in result.result
    answer = "".join(event.delta.text for event in read if event.HasField("delta"))
    assert "THE WITCH speaks in 4 of 12 scenes" in answer
    used = read[-2].usage.context_used
    assert used.tool_rounds == 1 and [call.name for call in used.tool_calls] == ["get_character_scenes"]


async def test_claude_calls_tools_over_several_rounds_each_billed_within_the_one_hold(
    settings: Settings, sessions: db.Sessions, nats_client: NatsClient, anthropic_fake: FakeAnthropic
) -> None:
    collection_id, scripts = one_script(scenes=30)
    anthropic_fake.reset()
    anthropic_fake.forget_cache()
    anthropic_fake.script(
        Step.call(("get_character_scenes", {"character": "the witch"})),
        Step.call(("get_scene", {"scene": "999"})),  # no such scene: the model is told, and goes on
        Step.call(("get_scene", {"scene": "3"}), ("get_outline", {})),
        Step(answer="The witch is in scenes 3, 6 and 9 (scene 3)."),
    )
    claude = claude_on(anthropic_fake)
    budget = OpenBudget()
    turns = runner(settings, sessions, nats_client, scripts, NoSearch(), budget, anthropic=claude)
    identity = writer("req-c")
    try:
        started = await turns.start(
            identity, ask("Tell me about the witch's scenes.", collection_id=collection_id, provider="anthropic")
        )
        read = await read_turn(nats_client, started)
    finally:
        await claude.close()

    results = [event.tool_result for event in read if event.HasField("tool_result")]
    assert [(r.round, r.name, r.is_error) for r in results] == [
        (1, "get_character_scenes", False),
        (2, "get_scene", True),
        (3, "get_scene", False),
        (3, "get_outline", False),
    ]
    assert "no scene '999'" in results[1].result
    sent = [received.body for received in anthropic_fake.received]
    assert len(sent) == 4 and all(body["tools"][0]["name"] == "get_scene" for body in sent)
    last = sent[-1]["messages"]
    assert [block["type"] for block in last[-1]["content"]] == ["tool_result", "tool_result"]
    assert last[-1]["content"][0]["tool_use_id"] == last[-2]["content"][0]["id"]

    # Every round billed: the turn's usage is the four calls' together, all inside the one hold.
    served = anthropic_fake.served
    usage = read[-2].usage.usage
    assert usage.output_tokens == sum(call.output_tokens for call in served)
    inputs = [
        s.usage.input_tokens + s.usage.cache_read_input_tokens + s.usage.cache_creation_input_tokens for s in served
    ]
    assert usage.input_tokens + usage.cache_read_tokens + usage.cache_write_tokens == sum(inputs)
    [(held_input, held_output)] = budget.holds
    assert sum(inputs) <= held_input and usage.output_tokens <= held_output
    assert served[-1].usage.cache_read_input_tokens > 0, "each round reads the rounds before it from the cache"
    used = read[-2].usage.context_used
    assert used.tool_rounds == 3 and len(used.tool_calls) == 4
    answer = "".join(event.delta.text for event in read if event.HasField("delta"))
    assert answer == "The witch is in scenes 3, 6 and 9 (scene 3)."


async def test_an_attempt_broken_in_a_later_round_is_billed_on_its_own_and_the_rounds_together(
    settings: Settings, sessions: db.Sessions, nats_client: NatsClient, anthropic_fake: FakeAnthropic
) -> None:
    """Round 2's first attempt breaks after message_start: it is retried, billed as its own event
    (numbered within the turn), and the turn's event bills the rounds that answered."""
    collection_id, scripts = one_script(scenes=12)
    anthropic_fake.reset()
    anthropic_fake.script(Step.call(("get_outline", {})), Step.break_after(0), Step(answer="It is in the outline."))
    claude = claude_on(anthropic_fake)
    fast = RetryPolicy(first_token_timeout=5.0, backoff_base=0.001, backoff_max=0.01)
    turns = runner(
        settings, sessions, nats_client, scripts, NoSearch(), anthropic=ReliableProvider(claude, policy=fast)
    )
    identity = writer("req-b")
    try:
        started = await turns.start(
            identity, ask("What is the outline?", collection_id=collection_id, provider="anthropic")
        )
        read = await read_turn(nats_client, started)
    finally:
        await claude.close()

    assert read[-1].WhichOneof("kind") == "end"
    first, broken, answered = anthropic_fake.served
    async with sessions() as session:
        query = select(outbox.c.payload).where(outbox.c.subject == USAGE_RECORDED).order_by(outbox.c.id)
        billed = [events_pb2.UsageRecorded.FromString(payload) for payload in (await session.execute(query)).scalars()]
    attempt, turn = [event for event in billed if event.conversation_id == started.conversation_id]
    assert attempt.event_id == attempt_event_id(started.turn_id, 1) and not attempt.success
    assert attempt.usage.input_tokens == broken.usage.input_tokens and attempt.usage.output_tokens == 1
    assert turn.success and turn.usage.output_tokens == first.output_tokens + answered.output_tokens


async def test_a_tool_loop_stops_at_its_round_limit_and_the_model_must_answer(
    settings: Settings, sessions: db.Sessions, nats_client: NatsClient, anthropic_fake: FakeAnthropic
) -> None:
    collection_id, scripts = one_script(scenes=12)
    anthropic_fake.reset()
    anthropic_fake.script(*[Step.call(("list_scenes", {}))] * 3)  # a model that would call for ever
    claude = claude_on(anthropic_fake)
    one_round = settings.model_copy(update={"tool_rounds": 1})
    turns = runner(one_round, sessions, nats_client, scripts, NoSearch(), anthropic=claude)
    identity = writer("req-r")
    try:
        started = await turns.start(
            identity, ask("Walk me through it.", collection_id=collection_id, provider="anthropic")
        )
        read = await read_turn(nats_client, started)
    finally:
        await claude.close()
    sent = [received.body for received in anthropic_fake.received]
    assert len(sent) == 2 and "tool_choice" not in sent[0] and sent[1]["tool_choice"] == {"type": "none"}
    assert read[-1].WhichOneof("kind") == "end" and read[-2].usage.context_used.tool_rounds == 1


async def test_openai_function_calling_runs_a_tool_round_then_answers(
    settings: Settings, sessions: db.Sessions, nats_client: NatsClient, openai_fake: FakeOpenAI
) -> None:
    collection_id, scripts = one_script(scenes=12)
    openai_fake.reset()
    openai_fake.script(Step.call(("get_character_scenes", {"character": "edward"})), Step(answer="In all twelve."))
    gpt = OpenAIProvider(api_key=openai_fake.api_key, base_url=openai_fake.base_url, default_model="gpt-x")
    turns = runner(settings, sessions, nats_client, scripts, NoSearch(), openai=gpt)
    identity = writer("req-o")
    try:
        started = await turns.start(identity, ask("Where is Edward?", collection_id=collection_id, provider="openai"))
        read = await read_turn(nats_client, started)
    finally:
        await gpt.close()
    [result] = [event.tool_result for event in read if event.HasField("tool_result")]
    assert result.name == "get_character_scenes" and result.result.startswith("EDWARD speaks in 12 of 12 scenes")
    second = openai_fake.received[-1].body["messages"]
    assert second[-2]["tool_calls"][0]["function"]["name"] == "get_character_scenes"
    assert second[-1] == {"role": "tool", "tool_call_id": second[-2]["tool_calls"][0]["id"], "content": result.result}
    assert "".join(event.delta.text for event in read if event.HasField("delta")) == "In all twelve."


class OneHit(NoSearch):
    """Retrieval that finds one passage of the script for every query."""

    async def search(
        self, identity: Identity, *, query: str, collection_ids: Sequence[str], k: int
    ) -> retrieval_pb2.SearchResponse:
        self.searches.append(query)
        hit = retrieval_pb2.ChunkHit(
            chunk_id="chunk-river", document_title="Big Fish", heading="EXT. RIVER - DAY", text="The river rises."
        )
        return retrieval_pb2.SearchResponse(hits=[hit])


async def test_what_search_script_finds_is_numbered_after_the_prompts_passages_and_cited_as_a_source(
    settings: Settings, sessions: db.Sessions, nats_client: NatsClient
) -> None:
    collection_id, scripts = one_script(scenes=6)
    turns = runner(settings, sessions, nats_client, scripts, OneHit())
    identity = writer("req-s")
    started = await turns.start(identity, ask("Search the script for the river", collection_id=collection_id))
    read = await read_turn(nats_client, started)

    [result] = [event.tool_result for event in read if event.HasField("tool_result")]
    assert result.name == "search_script" and result.result.startswith("[2] (Big Fish › EXT. RIVER - DAY)")
    sources = read[-3].sources.sources
    assert [(source.index, source.chunk_id) for source in sources] == [(1, "chunk-river"), (2, "chunk-river")]
