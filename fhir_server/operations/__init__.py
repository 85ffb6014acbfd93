"""Operations: one module per FHIR `$operation` (see routing.tables for the table of them)."""
