"""Base utilities every layer may use: errors, device descriptions, stop signals, PNG, the
compilation cache. Imports nothing else of ltpa_jax."""
