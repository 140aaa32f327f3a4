"""Pure-logic tests: no database, no network."""
