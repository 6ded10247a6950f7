"""agent.reset: what a test left behind, closed before the next one (each area's own hook)."""
