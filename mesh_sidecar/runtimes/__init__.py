"""Runtime adapters: one per model server, behind the small `RuntimeAdapter` interface."""
