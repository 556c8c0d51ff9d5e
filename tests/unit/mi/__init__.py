"""Unit tests of sipsock.mi (pure rules and the command table)."""
