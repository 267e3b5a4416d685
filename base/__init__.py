"""The base layer: configuration, data paths, progress, the canonical schema, segment rules, durable writes."""
