"""mabcq-bench: datasets and benchmark suite for offline, fully decentralized multi-agent RL."""

__version__ = "0.1.0"
