"""Submission of approved FHIR documents to the 電子カルテ情報共有サービス (client: :mod:`.client`)."""
