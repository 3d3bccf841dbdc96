"""Subcommands of `ep` that live in their own module (registered in cli.py)."""
