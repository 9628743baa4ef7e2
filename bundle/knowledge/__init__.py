"""The shared controlled vocabulary: finding categories and location/severity lexicons."""

from bundle.knowledge.base import (
    CHEXPERT_LABELS,
    DEFAULT_KNOWLEDGE_BASE_PATH,
    Category,
    KnowledgeBase,
    KnowledgeBaseError,
    default_knowledge_base,
)

__all__ = [
    "CHEXPERT_LABELS",
    "DEFAULT_KNOWLEDGE_BASE_PATH",
    "Category",
    "KnowledgeBase",
    "KnowledgeBaseError",
    "default_knowledge_base",
]
