"""Mixed-policy rollout engines (hf, vllm), looked up by name in the registry."""
