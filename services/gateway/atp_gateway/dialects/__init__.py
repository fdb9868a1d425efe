"""Client APIs (dialects) over the gateway's one exchange: each parses its requests and encodes replies."""
