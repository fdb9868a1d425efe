"""ATP's router: the control plane that owns routing policy and learning and publishes policy snapshots."""
