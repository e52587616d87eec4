"""The bottom layer: file and logging helpers every package may use (it imports no other package)."""
