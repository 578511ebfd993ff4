"""The store contract: what every backend must do, exercised through the `Store` protocol only
(no SQL), so a second backend passes the same tests the embedded one does."""
