"""The gateway: auth, quotas, the public HTTP API and SSE fan-out of chat turns."""
