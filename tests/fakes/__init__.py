"""Fakes of the outside world: real HTTP servers speaking the Anthropic and OpenAI wire formats.

Tests and bench scripts point the official SDKs at them instead of the real APIs:

    with FakeAnthropic() as fake:                      # 127.0.0.1, a free port, its own thread
        client = AsyncAnthropic(base_url=fake.base_url, api_key=fake.api_key, max_retries=0)
        fake.script(Script.reject(429, retry_after=0.1), Script.break_after(5))
        ...
        fake.received[-1].body["system"]               # what the client sent

Import them as `tests.fakes...` from the repository root (`python -m pytest` puts it on the
path; a bench script run as a file needs `PYTHONPATH=.`).
"""
