"""Evaluation: tasks, the eval pipeline, grading pool, result store, metrics and reports."""
