"""Evaluation as the official `test.py` does it: metrics and protocols (`metrics`), the evaluation
loop (`evaluator`) and its tables, crops and plots (`report`)."""
