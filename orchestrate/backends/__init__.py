"""Backends realise a topology on an engine (local Docker; Swarm later)."""
