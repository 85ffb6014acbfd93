"""Terminology from the loaded packages (and ValueSets/CodeSystems stored on the server).

    term = Terminology(definitions, find_stored)        # or server.terminology
    term.expand("http://hl7.org/fhir/ValueSet/administrative-gender", filter="fem", count=10)
    term.contains(vs_url, system, code)                 # True / False / None (cannot tell here)
    term.validate_code(valueset=vs_url, coding={...})   # {"result": True/False/None, "message", "display"}
    term.lookup(system, code)                            # display, designations, properties, or None
    term.subsumes(system, a, b)

What cannot be answered from what is held here (SNOMED CT, LOINC, UCUM… which no loaded
package carries; a code system with `content: not-present`/`example`/`fragment`; an unknown
filter) is a TerminologyError for `expand`/`lookup`, and None ("cannot tell") for
`contains`/`validate_code`; never a guess.
"""

from fhir_server.terminology.errors import TerminologyError
from fhir_server.terminology.service import Terminology
from fhir_server.terminology.stored import StoredFinder

__all__ = ["StoredFinder", "Terminology", "TerminologyError"]
