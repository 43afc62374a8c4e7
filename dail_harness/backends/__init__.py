"""Sampling back-ends (hf, vllm): one interface, so the pipeline never changes with the engine."""
