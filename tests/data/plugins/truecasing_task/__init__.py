"""A plugin pre-task: truecasing, the case of each word of the lower-cased input in three classes.

Lita, Ittycheriah, Roukos & Kambhatla 2003, "tRuEcasIng" (ACL): restore a word's case, lower,
Title (first letter upper) or UPPER (every letter upper, two letters or more), from lower-cased text.
It is ERNIE 2.0's capitalization prediction with the all-upper words told apart.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ernie_cpt.options import option
from pretasks import IGNORE_INDEX, register
from pretasks.capitalization import Capitalization


@dataclass
class TruecasingOptions:
    """truecasing: predict each word's case (lower, Title or UPPER) in the raw text"""

    truecasing_min_upper: int = option(2, "Letters an UPPER word has at the least (shorter ones are Title)")


@register
class Truecasing(Capitalization):
    name = "truecasing"
    summary = "each word's case: lower, Title or UPPER (Lita et al. 2003)"
    options_class = TruecasingOptions
    label_names = ("lower", "title", "upper")

    def word_labels(self, text: str, tokens) -> np.ndarray:
        labels = np.full(len(tokens), IGNORE_INDEX, dtype=np.int64)
        for first, end in tokens.word_ranges():
            word = text[tokens.starts[first]:tokens.ends[end - 1]]
            if word[:1].isalpha():
                upper = word.isupper() and len(word) >= self.options.truecasing_min_upper
                labels[first] = 2 if upper else int(word[0].isupper())
        return labels
