"""gcn-rag: a retrieval-augmented assistant over the NASA GCN Circulars."""

__version__ = "0.1.0"
