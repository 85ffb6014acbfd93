"""Who is asking and what they may do: bearer tokens (`tokens.py`), the identity they carry
(`identity.py`) and SMART scopes (`scopes.py`). Nothing here knows HTTP or the database."""
