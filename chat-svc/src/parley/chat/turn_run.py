"""Running a turn: the provider's answer streamed to the turn's subject, the tools it asks for
run between rounds (`tool_loop`), then the turn ended (`turn_end.TurnEnd`) as it went.

A turn's failure is reported to its client, not raised; only its cancellation propagates.

Each failed attempt the provider billed (`FailedAttempt`) is billed as it comes, on its own. A
cancelled turn is billed what the provider reported (`Reported`: the input side, and the rounds
a tool loop finished) plus a bound of the output received since, its bytes (never fewer than the
provider's tokens); with no report but text received, the input is the provider's bound of the
prompt. Neither can undercount what the provider charges.
"""

import asyncio
import logging
import time

from parley.chat import metrics, tool_loop
from parley.chat.providers import (
    FailedAttempt,
    Finished,
    ProviderRefused,
    ProviderUnavailable,
    Reported,
    StreamBroken,
    TextDelta,
    cut_off_usage,
)
from parley.chat.running_turns import RunningTurns
from parley.chat.turn_end import ActiveTurn, SettledElsewhere, TurnEnd, error_code, public_message

log = logging.getLogger(__name__)


async def run_turn(turn: ActiveTurn, *, end: TurnEnd, running: RunningTurns) -> None:
    answer: list[str] = []
    called = time.monotonic()
    first_token_seconds: float | None = None
    reported: Reported | None = None
    since_report: list[str] = []  # the text received after the last report
    owed = False  # a failed attempt is being billed
    try:
        finished: Finished | None = None
        events = tool_loop.answer(
            turn.provider,
            turn.prompt,
            model=turn.model,
            max_tokens=turn.max_tokens,
            session=turn.tools,
            announce=lambda call, done: turn.stream.tool(call, done=done),
        )
        async for event in events:
            if isinstance(event, TextDelta):
                if first_token_seconds is None and event.text:
                    first_token_seconds = time.monotonic() - called
                answer.append(event.text)
                since_report.append(event.text)
                await turn.stream.delta(event.text)
            elif isinstance(event, Reported):
                reported, since_report = event, []
            elif isinstance(event, FailedAttempt):
                owed = True
                await end.bill_attempt(turn, event)
                owed = False
            else:
                finished = event
        assert finished is not None, "a provider stream ends with Finished"
        # From here the answer is whole: storing it is no longer cancelled, and its failures
        # after the commit are not a failed turn (the stored conversation is the truth).
        running.finishing(turn.turn_id)
        await end.keep_reported(turn, finished.usage, provider=finished.provider, model=finished.model)
        _observe_first_token(first_token_seconds, provider=finished.provider, model=finished.model)
        await end.complete(turn, "".join(answer), finished)
    except asyncio.CancelledError:
        # The provider charges for what it was asked and produced before the connection closed.
        usage = cut_off_usage(
            reported,
            "".join(since_report),
            prompt_bound=lambda: turn.provider.count_tokens(turn.prompt, model=turn.model),
        )
        await end.fail(turn, state="cancelled", code="cancelled", message="the turn was cancelled", usage=usage)
        raise
    except StreamBroken as broken:
        log.warning("answer broken off", extra={"fields": {"turn_id": turn.turn_id, "error": str(broken)}})
        running.finishing(turn.turn_id)  # what was said is stored as it is
        await end.keep_reported(turn, broken.usage, provider=broken.provider, model=broken.model)
        _observe_first_token(first_token_seconds, provider=broken.provider, model=broken.model)
        await end.interrupted(turn, "".join(answer), broken)
    except (ProviderRefused, ProviderUnavailable) as error:
        log.warning("no provider answered", extra={"fields": {"turn_id": turn.turn_id, "error": str(error)}})
        refused = isinstance(error, ProviderRefused)
        await end.fail(
            turn,
            state="failed",
            code="provider_refused" if refused else "provider_unavailable",
            message=(
                "the model refused this request; try another model or provider"
                if refused
                else "the model is unavailable right now; please try again later"
            ),
        )
    except SettledElsewhere:
        log.warning("turn settled by another replica meanwhile", extra={"fields": {"turn_id": turn.turn_id}})
    except Exception as error:  # a turn's failure is reported to its client, not raised
        log.exception("turn failed", extra={"fields": {"turn_id": turn.turn_id}})
        await end.fail(
            turn,
            state="failed",
            code=error_code(error),
            message=public_message(error),
            # The model was answering (or billed an attempt we could not write down): what it
            # produced past our failure is unknown, the hold bounds it.
            billed_at_hold=first_token_seconds is not None or owed,
        )


def _observe_first_token(seconds: float | None, *, provider: str, model: str) -> None:
    if seconds is not None:
        metrics.time_to_first_token.labels(provider, model).observe(seconds)
