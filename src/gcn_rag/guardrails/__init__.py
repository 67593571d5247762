"""Guardrails: what may go into a model and come out of it, configured like Databricks' AI
Gateway (``ai_gateway.guardrails.input`` / ``.output``).

- :mod:`.pii` finds personal data and secrets, validated (Luhn, IBAN checksums), not only
  matched;
- :mod:`.injection` finds prompt-injection and jailbreak attempts (questions, and passages
  handed to a generator);
- :mod:`.topics` checks ``valid_topics`` and ``invalid_keywords``;
- :mod:`.policy` turns an endpoint's config into a :class:`~.policy.Guardrails` that the
  serving path asks once per text: mask, block, or let through, and what it found.
"""
