"""`parley chat`: an interactive conversation, each answer streamed as it arrives, its sources
listed under it; Ctrl-C while an answer streams cancels that turn."""

import re
from typing import Any

from rich.console import Console

from parley.cli.client import Api, ApiError


class Session:
    def __init__(
        self, api: Api, console: Console, *, collection_ids: list[str], conversation_id: str | None, tier: str
    ) -> None:
        self.api = api
        self.console = console
        self.collection_ids = collection_ids
        self.conversation_id = conversation_id
        self.tier = tier

    def run(self, message: str | None) -> None:
        if self.conversation_id:
            # Resuming: the conversation must exist (a 404 is the one-line error) and is shown briefly.
            found = self.api.get(f"/v1/conversations/{self.conversation_id}")
            self.console.print(f"[dim]resuming “{found['title']}”, {len(found['messages'])} messages[/]")
        if message is not None:
            self.ask(message)
        else:
            self.console.print("[dim]Ask away; an empty line or Ctrl-D ends, Ctrl-C cancels an answer.[/]")
            while True:
                try:
                    line = self.console.input("[bold cyan]you>[/] ")
                except EOFError:
                    break
                if not line.strip() or line.strip() in {"exit", "quit"}:
                    break
                self.ask(line.strip())
        if self.conversation_id:
            self.console.print(f"[dim]conversation {self.conversation_id} (parley chat --conversation …)[/]")

    def ask(self, message: str) -> None:
        body: dict[str, Any] = {"message": message, "stream": True, "tier": self.tier}
        if self.conversation_id:
            body["conversation_id"] = self.conversation_id
        else:
            body["collection_ids"] = self.collection_ids
        sources: list[dict[str, Any]] = []
        usage: dict[str, Any] | None = None
        answer = ""
        with self.api.stream("POST", "/v1/chat", json=body) as stream:
            assert stream.response is not None
            self.conversation_id = stream.response.headers.get("X-Conversation-Id", self.conversation_id)
            turn_id = stream.response.headers.get("X-Turn-Id", "")
            self.console.print("[bold magenta]parley>[/] ", end="")
            try:
                for event in stream:
                    if event.event == "delta":
                        answer += event.data["text"]
                        self.console.print(event.data["text"], end="", markup=False, soft_wrap=True)
                    elif event.event == "sources":
                        sources = event.data["sources"]
                    elif event.event == "usage":
                        usage = event.data
                    elif event.event == "error":
                        self.console.print()
                        self.console.print(f"[red]{event.data['message']} ({event.data['code']})[/]")
                        return
            except KeyboardInterrupt:
                self.cancel(turn_id)
                return
        self.console.print()
        # The passages the answer cites, under it; the others were context it did not quote.
        cited = {int(n) for n in re.findall(r"\[(\d+)\]", answer)}
        for source in sources if not cited else [s for s in sources if s["index"] in cited]:
            where = f" › {source['heading']}" if source.get("heading") else ""
            self.console.print(f"  [cyan][{source['index']}][/] {source['document_title']}{where}", markup=True)
        if usage:
            cost = usage.get("cost_usd")
            shown = "cost unknown" if cost is None else f"${cost:.6f}"
            self.console.print(
                f"[dim]{usage['model']}: {usage['input_tokens']} in, {usage['output_tokens']} out, "
                f"{usage['cache_read_tokens']} read from cache, {shown}[/]"
            )

    def cancel(self, turn_id: str) -> None:
        self.console.print()
        try:
            self.api.request("POST", f"/v1/conversations/{self.conversation_id}/turns/{turn_id}/cancel")
            self.console.print("[yellow]cancelled[/]")
        except ApiError as error:
            self.console.print(f"[yellow]could not cancel: {error.line()}[/]")
