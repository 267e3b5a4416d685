"""Feature computation and the Feast store."""
