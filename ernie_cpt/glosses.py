"""Plain words for the terms the console prints with scores, given the first time a process prints each
(issue 27: "drop from best to final", "BWT undefined" and "(collapsed)" were printed unexplained; so was
"majority" beside the held-out scores).
The definitions are those of :mod:`ernie_cpt.evaluation.forgetting` and ``ernie_cpt.commands.finetune``."""

from __future__ import annotations

GLOSSES = {
    "drop": "how far each task's held-out score fell from its best evaluation to its last, averaged over the "
            "tasks; 0 when every task ended at its best",
    "bwt": "backward transfer, how much training the later stages changed the final score of the tasks trained "
           "before them (negative: they were forgotten)",
    "bwt_undefined": "backward transfer needs a task that the last stage does not train; in this curriculum every "
                     "task trains in the last stage",
    "collapsed": "the model predicted one class for the whole test set, a constant guess",
    "majority": "the score of always predicting the most frequent label, which a task that learnt something beats",
}
_said: set[str] = set()


def gloss(term: str) -> str:
    """``term``'s gloss (GLOSSES) the first time this process asks for it; "" after that."""
    if term in _said:
        return ""
    _said.add(term)
    return GLOSSES[term]
