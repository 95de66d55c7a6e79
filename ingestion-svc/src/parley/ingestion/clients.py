"""Every outbound gRPC call of ingestion, each behind a Protocol (so the domain can be tested with
an in-test fake) and, in its gRPC form, with a deadline and the document owner's identity.

`Completer`: a completion from chat-svc's `Complete` — the one place that holds the providers,
their keys and their retries, and bills the call to the tenant (usage kind `summary`). The gRPC
form turns the status codes the caller decides on into kit errors: a budget that cannot hold the
call is `BudgetExceeded`, chat-svc down or too slow is `Unavailable`.
"""

from dataclasses import dataclass
from typing import Protocol

import grpc

from parley.kit.errors import BudgetExceeded, Unavailable
from parley.kit.identity import Identity, Signer
from parley.kit.rpc import open_channel
from parley.v1 import chat_pb2, chat_pb2_grpc


@dataclass(frozen=True, slots=True)
class Owner:
    """Whose document it is: the tenant billed for a model's work, and the user it is done for."""

    tenant_id: str
    user_id: str
    # The API key that asked for the work (artifacts written on request), billed to it; "" for
    # the pipeline's own work.
    api_key_id: str = ""


@dataclass(frozen=True, slots=True)
class Completion:
    text: str
    provider: str  # who answered (after chat-svc's fallbacks, not necessarily who was asked)
    model: str
    input_tokens: int
    output_tokens: int


class Completer(Protocol):
    async def complete(self, *, owner: Owner, system: str, prompt: str, max_tokens: int, request_id: str) -> Completion:
        """Raise BudgetExceeded when the owner's budget cannot hold the call, Unavailable when no
        provider could answer now (the caller may try again later)."""
        ...


_UNREACHABLE = frozenset({grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED})


class ChatCompleter:
    """`Complete` on chat-svc with one provider and model (empty: chat-svc's defaults)."""

    def __init__(self, target: str, *, deadline_seconds: float, provider: str, model: str, signer: Signer) -> None:
        self._channel: grpc.aio.Channel = open_channel(target)
        self._signer = signer
        self._stub = chat_pb2_grpc.ChatServiceStub(self._channel)
        self._deadline = deadline_seconds
        self._provider = provider
        self._model = model

    async def complete(self, *, owner: Owner, system: str, prompt: str, max_tokens: int, request_id: str) -> Completion:
        # No `kind`: CompleteRequest's default kind is `summary`, which is what an artifact is billed as.
        request = chat_pb2.CompleteRequest(
            system=system,
            prompt=prompt,
            max_tokens=max_tokens,
            provider=self._provider,
            model=self._model,
            request_id=request_id,
        )
        identity = Identity(
            tenant_id=owner.tenant_id, user_id=owner.user_id, request_id=request_id, api_key_id=owner.api_key_id
        )
        try:
            response = await self._stub.Complete(
                request, timeout=self._deadline, metadata=self._signer.metadata(identity)
            )
        except grpc.aio.AioRpcError as error:
            if error.code() == grpc.StatusCode.RESOURCE_EXHAUSTED:
                raise BudgetExceeded(error.details() or "the budget cannot hold this completion") from None
            if error.code() in _UNREACHABLE:
                raise Unavailable("chat-svc could not complete now; try again") from None
            raise
        return Completion(
            text=response.text,
            provider=response.provider,
            model=response.model,
            input_tokens=response.usage.input_tokens,
            output_tokens=response.usage.output_tokens,
        )

    async def close(self) -> None:
        await self._channel.close(grace=None)
