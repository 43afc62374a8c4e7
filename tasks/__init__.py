"""Built-in benchmark tasks, one small module each; their data lives in tasks/data (see ATTRIBUTION.md)."""
