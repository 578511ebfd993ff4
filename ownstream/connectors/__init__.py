"""Built-in connectors: each subpackage holds a manifest.json and a generator `collect`.

A connector sees only its START message and the environment its manifest declares; it never
learns which connection or grant it runs for, so one connector serves every connection.
"""
