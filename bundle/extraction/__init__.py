"""Report -> findings extraction (issue #4): backends ``rules`` and ``llm``, cache, readers, writers."""
