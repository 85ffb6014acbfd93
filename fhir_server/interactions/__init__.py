"""Interactions: one module per FHIR REST interaction (see routing.tables for the table of them)."""
