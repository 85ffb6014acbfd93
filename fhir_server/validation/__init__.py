"""Validation of FHIR R4 JSON against the StructureDefinitions of the loaded packages.

* `structural`: `StructuralValidator`, the check every write goes through, on the element
  models of `fhir_server.definitions.model` (shared with search) and the primitive checks of
  `fhir_server.definitions.primitives`.
* `profile` and its rule modules: what profiles and the base definitions add (bindings,
  invariants, slicing, references…); `pipeline`: what a write and `$validate` run.

Nothing is compiled at import time.
"""

from fhir_server.validation.structural import StructuralValidator

__all__ = ["StructuralValidator"]
