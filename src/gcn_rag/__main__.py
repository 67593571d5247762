"""``python -m gcn_rag`` runs the CLI."""

from gcn_rag.cli import main

main()
