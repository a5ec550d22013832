"""The options of the modeling layer: the encoder's size or source, and the sharing architecture.

They live apart from the models so that ``--help`` can list them without loading torch or
transformers; an architecture name is checked against the registry when the options are read.
"""

from __future__ import annotations

from dataclasses import dataclass

from ernie_cpt.errors import UserError
from ernie_cpt.options import Range, check_ranges, option

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
    dropout: float = option(0.1, "Dropout probability of hidden states: embeddings, every layer's outputs and the "
                            "task heads (ErnieConfig hidden_dropout_prob; BERT's and ERNIE's 0.1). Modern encoder "
                            "recipes pre-train with 0 (Cramming, Geiping & Goldstein 2023; ModernBERT, Warner et al. "
                            "2024): faster steps, and no regularisation needed on a corpus seen about once",
                            valid=Range(0, 1, high_open=True))
    attention_dropout: float = option(0.1, "Dropout probability of the attention probabilities (ErnieConfig "
                                      "attention_probs_dropout_prob; BERT's and ERNIE's 0.1; 0 in Cramming and "
                                      "ModernBERT)", valid=Range(0, 1, high_open=True))
    mlm_bias_init: str = option("prior", "How a new masked-LM head's output bias starts: prior, the log frequency "
                                "of each token among the targets of a sample of training examples (Lin et al. "
                                "2017's prior initialisation), so a short run predicts at least the most frequent "
                                "target; zeros, as BERT does. An --init-from MLM head and a resumed checkpoint "
                                "replace it", choices=("prior", "zeros"), absent="zeros")
    init_from: str | None = option(None, "Start a new run from a model: an ernie-cpt export or run directory "
                                   "(its latest checkpoint: every head and the task embedding are restored; how a "
                                   "finished run is extended), or a local BERT/ERNIE folder (safetensors; the "
                                   "encoder and an MLM head, the task embedding new). Its tokenizer is used")


DEFAULT_ARCHITECTURE = "hard"

# The built-in sharing architectures (ernie_cpt.modeling.architectures), the default first, with each
# class's ``summary``: written out here so that --help names them without importing torch (a test
# checks this text against the registered classes).
ARCHITECTURES_HELP = (
    "How the tasks share the encoder: "
    "hard: every layer shared by all tasks, a head per task (ERNIE 2.0 as published; exports as one ErnieModel); "
    "cgc: --shared-experts experts shared by all tasks and --task-experts owned by each, each a copy of the top "
    "--expert-layers layers; a task's gate mixes its own and the shared (Tang et al. 2020); "
    "cross_stitch: a column per task, each a copy of the top --expert-layers layers, mixed after every layer by "
    "learned cross-stitch units initialised near identity (Misra et al. 2016); "
    "mmoe: the top --expert-layers layers become --num-experts experts; each task mixes them with its own "
    "softmax gate, per token (Ma et al. 2018); "
    "ple: CGC stacked over the top --expert-layers layers, one level per layer, a shared gate feeding each next "
    "level (Tang et al. 2020)"
)


@dataclass
class ArchitectureOptions:
    """Architecture: how the tasks share the encoder"""

    architecture: str = option(DEFAULT_ARCHITECTURE, ARCHITECTURES_HELP)
    expert_layers: int = option(2, "cgc/cross_stitch/mmoe/ple: how many of the top encoder layers become experts "
                                "or task columns (K); the layers below stay shared", valid=Range(1, 96))
    num_experts: int = option(4, "mmoe: experts, each a copy of the top --expert-layers layers", valid=Range(1, 64))
    shared_experts: int = option(2, "cgc/ple: experts shared by all tasks (per level)", valid=Range(0, 64))
    task_experts: int = option(1, "cgc/ple: experts owned by each task (per level)", valid=Range(0, 64))

    def __post_init__(self) -> None:
        from ernie_cpt.modeling.architectures import ARCHITECTURES

        check_ranges(self)  # options made in code as well as on the command line
        ARCHITECTURES.get(self.architecture)  # checked when the options are read, before anything trains
        if self.shared_experts + self.task_experts < 1:
            raise UserError("--shared-experts and --task-experts are both 0: a gate needs at least one expert; "
                            "raise either")
