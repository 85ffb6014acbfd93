"""Validation of FHIR R4 JSON against the StructureDefinitions of the loaded packages.

* `model`: StructureDefinition snapshots compiled (lazily, once per URL) into element models,
  shared with the search layer (`_summary`, `_elements`) through `models_for(definitions)`.
* `primitives`: value checks of the primitive types, built from their definitions.
* `structural`: `StructuralValidator`, the check every write goes through.

Nothing is compiled at import time.
"""

from fhir_server.validation.model import ElementModel, Models, Structure, TypeModel, models_for
from fhir_server.validation.structural import StructuralValidator

__all__ = ["ElementModel", "Models", "StructuralValidator", "Structure", "TypeModel", "models_for"]
