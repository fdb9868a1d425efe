"""The ATP gateway: the OpenAI-compatible HTTP, SSE and WebSocket edge in front of the adapters."""
