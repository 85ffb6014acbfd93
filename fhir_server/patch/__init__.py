"""The two PATCH formats FHIR R4 defines, each applied to a copy of the current resource:
JSON Patch (RFC 6902, `json_patch.py`) and FHIRPath Patch (`fhirpath_patch.py`)."""
