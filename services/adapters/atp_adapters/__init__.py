"""ATP adapters: the data plane that routes a request, calls the provider and streams the reply."""
