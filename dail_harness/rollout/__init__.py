"""Generating D_syn: mixed-policy rollouts (student drafts, privileged student verifies)."""
