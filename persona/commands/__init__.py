"""Sub-command groups of the ``persona`` CLI (one module per area; heavy imports stay inside commands)."""
