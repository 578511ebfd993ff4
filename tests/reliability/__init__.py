"""Reliability under crashes and load, with real processes: kill -9 of an import, a run and
`serve` at several points (then an integrity check, exact counts and a clean re-run), a large
import that never freezes the server, two workers that never overlap, a worker that survives
errors. Marked `reliability`; part of `make test`."""
