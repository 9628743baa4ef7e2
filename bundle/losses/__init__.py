"""Losses: each takes the network's output dict and the batch target."""

from .contrastive import CLIPContrastiveLoss
from .medfilip import MedFILIPLoss, SoftTargetContrastiveLoss, mine_itm_pairs, patch_sentence_similarity
from .sentence_similarity import SentenceEmbedder
from .ssm import FindingsVocabulary, OwnTextTargets, SemanticSimilarityMatrix

__all__ = [
    "CLIPContrastiveLoss",
    "FindingsVocabulary",
    "MedFILIPLoss",
    "OwnTextTargets",
    "SemanticSimilarityMatrix",
    "SentenceEmbedder",
    "SoftTargetContrastiveLoss",
    "mine_itm_pairs",
    "patch_sentence_similarity",
]
