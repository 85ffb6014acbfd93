"""One module per search parameter type: what is indexed at write time, and how a query on it
becomes a `Term` (an indexed MongoDB condition plus the exact predicate on stored values)."""
