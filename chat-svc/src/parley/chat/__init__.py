"""chat-svc: conversations, turns, context building, LLM providers and the stream of a turn's events."""
