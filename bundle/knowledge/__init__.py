"""The shared controlled vocabulary: finding categories (synonyms, descriptions, visual attributes),
location/severity/attribute lexicons and statements of normality."""

from bundle.knowledge.base import (
    ATTRIBUTE_KEYS,
    CHEXPERT_LABELS,
    DEFAULT_KNOWLEDGE_BASE_PATH,
    Category,
    KnowledgeBase,
    KnowledgeBaseError,
    default_knowledge_base,
)

__all__ = [
    "ATTRIBUTE_KEYS",
    "CHEXPERT_LABELS",
    "DEFAULT_KNOWLEDGE_BASE_PATH",
    "Category",
    "KnowledgeBase",
    "KnowledgeBaseError",
    "default_knowledge_base",
]
