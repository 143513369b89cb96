"""Search benchmark: a synthetic catalog with ground truth, hub search against FTS5 and tantivy."""
