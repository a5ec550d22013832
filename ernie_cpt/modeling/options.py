"""The options of the modeling layer: the encoder's size or source, and the sharing architecture.

They live apart from the models so that ``--help`` can list them without loading torch or
transformers; an architecture name is checked against the registry when the options are read.
"""

from __future__ import annotations

from dataclasses import dataclass

from ernie_cpt.options import Range, option

# (layers, hidden size, attention heads, feed-forward size); `base` has BERT-base dimensions.
PRESETS = {
    "tiny": (2, 128, 2, 512),
    "mini": (4, 256, 4, 1024),
    "small": (4, 512, 8, 2048),
    "medium": (8, 512, 8, 2048),
    "base": (12, 768, 12, 3072),
}


@dataclass
class ModelOptions:
    """Model: the encoder's size, or the checkpoint it starts from"""

    model_size: str = option("mini", "Size preset: tiny L2/H128, mini L4/H256, small L4/H512, medium L8/H512, "
                             "base L12/H768 (BERT-base)", choices=tuple(PRESETS))
    num_layers: int | None = option(None, "Override the preset's number of layers", valid=Range(1, 96))
    hidden_size: int | None = option(None, "Override the preset's hidden size", valid=Range(8, 16_384))
    num_heads: int | None = option(None, "Override the preset's number of attention heads", valid=Range(1, 256))
    intermediate_size: int | None = option(None, "Override the preset's feed-forward size", valid=Range(8, 65_536))
    dropout: float = option(0.1, "Dropout of hidden states and attention probabilities",
                            valid=Range(0, 1, high_open=True))
    init_from: str | None = option(None, "Start a new run from a model: an ernie-cpt export or run directory "
                                   "(its latest checkpoint: every head and the task embedding are restored; how a "
                                   "finished run is extended), or a local BERT/ERNIE folder (safetensors; the "
                                   "encoder and an MLM head, the task embedding new). Its tokenizer is used")


@dataclass
class ArchitectureOptions:
    """Architecture: how the tasks share the encoder"""

    architecture: str = option("hard", "How the tasks share the encoder: hard (every layer shared, as ERNIE 2.0), "
                               "mmoe, cgc, ple or cross_stitch (the top --expert-layers layers become experts or "
                               "task columns)")
    expert_layers: int = option(2, "mmoe/cgc/ple/cross_stitch: how many of the top encoder layers become experts "
                                "or task columns; the layers below stay shared", valid=Range(1, 96))
    num_experts: int = option(4, "mmoe: expert copies of the top --expert-layers layers", valid=Range(1, 64))
    shared_experts: int = option(2, "cgc/ple: experts shared by all tasks", valid=Range(0, 64))
    task_experts: int = option(1, "cgc/ple: experts owned by each task", valid=Range(0, 64))

    def __post_init__(self) -> None:
        from ernie_cpt.modeling.architectures import ARCHITECTURES

        ARCHITECTURES.get(self.architecture)  # checked when the options are read, before anything trains
