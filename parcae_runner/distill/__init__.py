"""Distillation of a GQA transformer teacher into an RWKV-7 TimeMix student (PRWKV / cxa076 recipe)."""
