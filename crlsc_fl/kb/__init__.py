"""Knowledge bases (SKB and PKB): FAISS PQ indexes of unit vectors."""

from crlsc_fl.kb.builders import build_pkb
from crlsc_fl.kb.knowledge_base import INDEX_TYPES, KBConfig, KBMetadata, KnowledgeBase, KnowledgeBaseError

__all__ = [
    "INDEX_TYPES", "KBConfig", "KBMetadata", "KnowledgeBase", "KnowledgeBaseError",
    "build_pkb",
]
