"""JP-CLINS FHIR documents, pure: offline validation and the 6 information (issue 17; docs/fhir.md).

``validate.py`` (R4 structure through ``fhir.resources``, then the JP-CLINS acceptance rules of
``rules.py`` with the document types of ``documents.toml``), ``extract.py`` (the 6 information of a
Bundle) and ``summary_bundle.py`` (a reproducible 6 information document). No database, no network.
"""
