"""ernie-cpt: ERNIE 2.0-style continual pre-training of language models."""

__version__ = "0.1.0"
