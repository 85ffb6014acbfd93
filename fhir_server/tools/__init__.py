"""Tooling around the server, apart from the domain rules (`coordination/`): the CSV member
directory import (`directory`), the demo datasets (`demo`) and the concept → profile map with
its README table (`concepts`). Used by the `fhir-server` command, never by a request."""
