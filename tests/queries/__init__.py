"""The owner's reads and writes beyond the client surface: filters, views, expansions and
sort; deleting a record; pushing records and their sync state."""
