"""chat-svc: `python -m parley.chat`."""

import asyncio
from pathlib import Path

from parley.chat import events
from parley.chat.clients import IngestionClient, RetrievalClient, UsageClient
from parley.chat.completions import Completions
from parley.chat.config import Settings
from parley.chat.conversations import Conversations
from parley.chat.global_context import GlobalContexts
from parley.chat.grpc_api import ChatApi
from parley.chat.intent import IntentClassifier
from parley.chat.memory import Summarizer
from parley.chat.metering import Meter
from parley.chat.models import outbox
from parley.chat.providers import providers
from parley.chat.tools import Toolbox, ToolDesk
from parley.chat.turns import TurnRunner
from parley.kit.outbox import OutboxRelay
from parley.kit.runtime import ServiceRuntime
from parley.kit.tokens import load_encoding
from parley.v1 import chat_pb2_grpc


async def main() -> None:
    settings = Settings()
    llms = providers(settings)  # a bad provider setting stops the service here
    intents = IntentClassifier.configured(settings.intent_model, llms)
    await load_encoding()
    runtime = await ServiceRuntime.start(
        "chat", settings, schema="chat", migrations=Path(__file__).parent / "migrations"
    )
    deadline = settings.call_deadline_seconds
    signer = settings.signer()
    retrieval = RetrievalClient(settings.retrieval_target, deadline_seconds=deadline, signer=signer)
    ingestion = IngestionClient(settings.ingestion_target, deadline_seconds=deadline, signer=signer)
    usage = UsageClient(settings.usage_target, deadline_seconds=deadline, signer=signer)
    relay = OutboxRelay(sessions=runtime.sessions, table=outbox, js=runtime.js)
    memory = Summarizer.configured(
        settings.summary_model,
        llms,
        default_provider=settings.default_provider,
        sessions=runtime.sessions,
        relay=relay,
        window=settings.history_messages,
    )
    global_contexts = GlobalContexts(scripts=ingestion)
    toolbox = Toolbox(scripts=ingestion, retrieval=retrieval)
    turns = TurnRunner(
        settings=settings,
        sessions=runtime.sessions,
        nc=runtime.nc,
        js=runtime.js,
        retrieval=retrieval,
        collections=ingestion,
        budget=usage,
        providers=llms,
        intents=intents,
        memory=memory,
        relay=relay,
        global_contexts=global_contexts,
        toolbox=toolbox,
    )
    conversations = Conversations(sessions=runtime.sessions, js=runtime.js)
    completions = Completions.configured(
        settings, llms, budget=usage, meter=Meter(sessions=runtime.sessions, relay=relay)
    )
    # The relay outlives the gRPC server: turns finishing during shutdown still send their usage.
    relay_stop = asyncio.Event()
    try:
        runtime.spawn(relay.run(relay_stop), name="outbox")
        runtime.spawn(turns.leases.run(runtime.stopping), name="turn-leases")
        await events.serve_cancels(runtime.nc, turns)
        runtime.consume(events.summaries(memory))
        await runtime.serve_grpc(
            (
                chat_pb2_grpc.add_ChatServiceServicer_to_server,
                ChatApi(
                    turns=turns,
                    conversations=conversations,
                    completions=completions,
                    tools=ToolDesk(toolbox=toolbox, scripts=global_contexts, collections=ingestion),
                ),
                "parley.v1.ChatService",
            )
        )
        await runtime.wait_for_signal()
    finally:
        await runtime.stop_taking_work()
        await turns.drain(settings.shutdown_grace_seconds)
        relay_stop.set()
        await runtime.close()
        for client in (retrieval, ingestion, usage):
            await client.close()
        for llm in llms.values():
            await llm.close()


if __name__ == "__main__":
    asyncio.run(main())
