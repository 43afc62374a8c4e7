"""dail-harness: evaluate and train language models from expert solutions (DAIL and baselines)."""

__version__ = "0.1.0"
