"""ATP's operator tools: the local suite runner (`make run`) and the gRPC health probe for containers."""

__all__: list[str] = []
