"""Scoring: one scorer for the service, the batch re-score, evaluation and drift; the persona history."""
