"""Blobs end to end: a photo-archive importer stores content through the run protocol, and
`/v1/blobs/{id}` serves it only through records a bearer may read."""
