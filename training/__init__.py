"""Redline's trainer and evaluation harness. May import `server`'s store and model runtime."""
