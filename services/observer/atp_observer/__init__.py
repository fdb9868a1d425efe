"""ATP's observer: the telemetry plane that stores observations and feedback and streams rewards."""
