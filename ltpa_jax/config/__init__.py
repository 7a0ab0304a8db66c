"""Configs: the fields with their defaults, config files by name, and validation."""
