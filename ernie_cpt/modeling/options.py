"""The options of the modeling layer: the encoder's size or source, and the sharing architecture.

The model's options load no torch (``plan`` and ``COMMAND --help`` read this module). The
architecture's are the seam's only: the name, checked against the registry when the options are made,
and ``--expert-layers``, which every architecture that splits the encoder reads. Their help lists the
registered architectures when ``--help`` is built (which imports them: torch), and each architecture
declares its own options next to its code (``--num-experts``: ``architectures.mmoe.MMoEOptions``).
"""

from __future__ import annotations

from dataclasses import dataclass

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


def _architectures_help() -> str:
    from ernie_cpt.modeling.architectures import ARCHITECTURES

    return f"How the tasks share the encoder: {ARCHITECTURES.listing(first=DEFAULT_ARCHITECTURE)}"


def _expert_layers_help() -> str:
    from ernie_cpt.modeling.architectures import ARCHITECTURES

    readers = [name for name, cls in ARCHITECTURES.items() if "expert_layers" in cls.options_used]
    return (f"{'/'.join(sorted(readers))}: how many of the top encoder layers become experts or task columns (K); "
            f"the layers below stay shared")


@dataclass
class ArchitectureOptions:
    """Architecture: how the tasks share the encoder (each architecture's own options follow)"""

    architecture: str = option(DEFAULT_ARCHITECTURE, _architectures_help)
    expert_layers: int = option(2, _expert_layers_help, valid=Range(1, 96))

    def __post_init__(self) -> None:
        from ernie_cpt.modeling.architectures import ARCHITECTURES

        check_ranges(self)  # options made in code as well as on the command line
        ARCHITECTURES.get(self.architecture)  # checked when the options are read, before anything trains
