"""Facts that cross services, each defined once: NATS subjects and their message ids, the limits
of what callers send, the document types ingestion accepts, and the chat tiers.

A service that publishes a subject and the service that consumes it import the same name from
here; a limit the gateway checks early and a service enforces is the same number. Change one of
these and every service sees the change (and docs/architecture.md says what it means).
"""

from pathlib import PurePosixPath

from parley.v1 import chat_pb2

# --- NATS subjects (streams in parley.kit.bus) --------------------------------------------------

INGEST_PRIORITIES = ("urgent", "normal", "low")
INGEST_JOBS = "jobs.ingest.>"  # JOBS: IngestJob, one per document version
CHUNKS_UPSERTED = "docs.chunks.upserted"  # DOCS: ChunksUpserted, ingestion → retrieval
CHUNKS_DELETED = "docs.chunks.deleted"  # DOCS: ChunksDeleted, ingestion → retrieval
CHUNKS_INDEXED = "docs.chunks.indexed"  # DOCS: ChunksIndexed, retrieval → ingestion (READY)
PROGRESS_DOCUMENTS = "progress.document.*"  # PROGRESS: DocumentProgress, read for SSE
SUMMARIZE_JOBS = "jobs.chat.summarize"  # JOBS: a conversation's rolling summary
TURN_STREAMS = "chat.stream.>"  # CHATSTREAM: TurnEvent, chat-svc → gateway
CANCEL_TURNS = "chat.cancel.*"  # core NATS request/reply: CancelTurnCommand
USAGE_RECORDED = "usage.recorded"  # USAGE: UsageRecorded, every billable call → usage-svc
BUDGET_ALERTS = "alerts.budget.*"  # core NATS: BudgetAlert, gateway → whoever forwards alerts


def ingest_subject(priority: str = "normal") -> str:
    if priority not in INGEST_PRIORITIES:
        raise ValueError(f"unknown ingest priority {priority!r}")
    return f"jobs.ingest.{priority}"


def progress_subject(document_id: object) -> str:
    return f"progress.document.{document_id}"


def turn_subject(conversation_id: object, turn_id: object) -> str:
    """Every event of one chat turn. Both ids are uuids: never a wildcard or a space."""
    return f"chat.stream.{conversation_id}.{turn_id}"


def cancel_subject(turn_id: object) -> str:
    return f"chat.cancel.{turn_id}"


def budget_alert_subject(tenant_id: object) -> str:
    return f"alerts.budget.{tenant_id}"


def parked_subject(stream: str, durable: str) -> str:
    """Where a consumer parks a message that kept failing (stream PARKED)."""
    return f"parked.{stream}.{durable}"


# --- Nats-Msg-Id formats: a retried publish of the same fact is dropped as a duplicate ----------


def ingest_msg_id(document_id: object, version: int) -> str:
    return f"ingest:{document_id}:{version}"


def chunks_msg_id(document_id: object, version: int, part: int = 0) -> str:
    """A version's chunk set; a set too large for one message goes in parts (1, 2, …), each its own."""
    return f"chunks:{document_id}:{version}" + (f":{part}" if part else "")


def indexed_msg_id(document_id: object, version: int) -> str:
    return f"indexed:{document_id}:{version}"


def index_failed_msg_id(document_id: object, version: int) -> str:
    """The ChunksIndexed that says retrieval gave up on a version."""
    return f"index-failed:{document_id}:{version}"


def document_deleted_msg_id(document_id: object) -> str:
    return f"deleted:document:{document_id}"


def collection_deleted_msg_id(collection_id: object) -> str:
    return f"deleted:collection:{collection_id}"


def progress_msg_id(document_id: object, version: int, status: str) -> str:
    return f"progress:{document_id}:{version}:{status}"


def turn_event_msg_id(turn_id: object, seq: int) -> str:
    return f"{turn_id}:{seq}"


# --- Limits on what callers send ------------------------------------------------------------------

MAX_ID_CHARS = 64
MAX_MESSAGE_CHARS = 8_000
MAX_EMBED_TEXTS = 256  # texts one Embed call (/v1/embeddings) takes
MAX_COLLECTIONS_PER_CONVERSATION = 20
MAX_OUTPUT_TOKENS = 8_192
MAX_INTENT_CHARS = 40
MAX_MODEL_CHARS = 100
MODEL_NAME = r"^[A-Za-z0-9._:/-]*$"  # a provider's or model's name, as callers may choose one
MAX_QUERY_CHARS = 2_000
MAX_SEARCH_K = 50
MAX_FILTER_VALUES = 100  # a search filter's documents, scenes or characters
MAX_HEADING_FILTER_CHARS = 300
MAX_NAME_CHARS = 200
MAX_DESCRIPTION_CHARS = 2_000
MAX_TITLE_CHARS = 300
MAX_PAGE_TOKEN_CHARS = 512

# --- Document types ingestion accepts --------------------------------------------------------------

PLAIN_TEXT = "text/plain"
MARKDOWN = "text/markdown"
HTML = "text/html"
PDF = "application/pdf"
FOUNTAIN = "text/x-fountain"
FINAL_DRAFT = "application/x-fdx"
# Each accepted type and the file name endings that imply it when neither the caller's declared
# type nor the content settles it.
DOCUMENT_TYPES: dict[str, tuple[str, ...]] = {
    PLAIN_TEXT: (".txt", ".text"),
    MARKDOWN: (".md", ".markdown"),
    HTML: (".html", ".htm", ".xhtml"),
    PDF: (".pdf",),
    FOUNTAIN: (".fountain", ".spmd"),
    FINAL_DRAFT: (".fdx",),
}
SCREENPLAY_TYPES = frozenset({FOUNTAIN, FINAL_DRAFT})


def document_type_for(filename: str) -> str | None:
    """The accepted type a file name's ending implies, if any."""
    suffix = PurePosixPath(filename.strip().replace("\\", "/")).suffix.lower()
    return next((kind for kind, endings in DOCUMENT_TYPES.items() if suffix in endings), None)


# --- Chat tiers: the prompt budget each allows ------------------------------------------------------

TIER_BUDGETS: dict[int, int] = {
    chat_pb2.TIER_QUICK: 1_200,
    chat_pb2.TIER_STANDARD: 5_000,
    chat_pb2.TIER_DEEP: 20_000,
}


def tier_budget(tier: int) -> int:
    """Unspecified (or unknown) is standard."""
    return TIER_BUDGETS.get(tier, TIER_BUDGETS[chat_pb2.TIER_STANDARD])


# The global context (outlines, main characters' sheets, the scene-card index: chat-svc's
# global_context) has an allowance of its own beside the tier's budget: it is the same on every
# turn of a conversation, so a provider's prompt cache reads it at a tenth of input's price after
# the first turn. A feature film's index (~200 scenes) fits standard's allowance.
TIER_GLOBAL_BUDGETS: dict[int, int] = {
    chat_pb2.TIER_QUICK: 2_000,
    chat_pb2.TIER_STANDARD: 8_000,
    chat_pb2.TIER_DEEP: 24_000,
}


def tier_global_budget(tier: int) -> int:
    """Unspecified (or unknown) is standard."""
    return TIER_GLOBAL_BUDGETS.get(tier, TIER_GLOBAL_BUDGETS[chat_pb2.TIER_STANDARD])


def tier_named(name: str) -> int:
    """The proto Tier of a public name (`quick`, `standard`, `deep`)."""
    return chat_pb2.Tier.Value(f"TIER_{name.upper()}")


def tier_name(tier: int) -> str:
    return chat_pb2.Tier.Name(tier or chat_pb2.TIER_STANDARD).removeprefix("TIER_").lower()


# --- Chat intents: what a message asks for (the gateway checks a caller's hint, chat-svc decides) -

INTENTS = ("local_edit", "section_feedback", "global_question", "brainstorm", "question")

# --- Usage event kinds (UsageRecorded.kind): what a billed call was for; usage-svc reports by kind --

USAGE_CHAT = "chat"  # a chat turn's answer (chat-svc)
USAGE_INTENT = "intent"  # a turn's intent classification, billed on its own (chat-svc)
USAGE_SUMMARY = "summary"  # a rolling summary, or a `Complete` call such as an artifact (chat-svc)
USAGE_EMBEDDING = "embedding"  # chunks and queries embedded (retrieval-svc)

# The offline provider, of chat (`LocalProvider`) and of embeddings (hashing, MiniLM): its calls
# cost nothing (usage-svc prices it at zero) and its one chat model bears its name.
LOCAL_PROVIDER = "local"

# --- Completions: chat-svc's `Complete`, the one LLM entry point for other services --------------

MAX_COMPLETION_CHARS = 400_000  # a Complete call's system and prompt together (~100k cl100k tokens)
COMPLETION_KINDS = (USAGE_SUMMARY,)  # the usage kinds a completion may be billed as; empty means the first

# --- Artifacts: their job queue and the analysis step's progress ids ------------------------------

# JOBS: AnalyzeJob, ingestion → ingestion. Taken after every ingest queue (below low), one batch a job.
ANALYZE_JOBS = "jobs.analyze"
ARTIFACT_KINDS = ("scene_card", "outline", "character_sheet", "plot_thread", "coverage")


def analyze_msg_id(document_id: object, version: int, written: int) -> str:
    """The job that writes a version's next batch, after `written` artifacts: a batch queued twice
    (a redelivered job, a lazy request meanwhile) is one job."""
    return f"analyze:{document_id}:{version}:{written}"


def analyzing_msg_id(document_id: object, version: int, done: int) -> str:
    """ANALYZING moves on within the status (done of total): each step is its own progress message."""
    return f"progress:{document_id}:{version}:ANALYZING:{done}"
