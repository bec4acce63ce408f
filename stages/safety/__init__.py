"""Safety stages: secret and PII redaction, decontamination against evaluation sets."""
