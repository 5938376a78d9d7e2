"""Evaluation as the official `test.py` does it: metrics and protocols (`metrics`), the evaluation
loop (`evaluator`), official test configs (`official_test`), its tables, crops and plots (`report`)
and the results of unchanging models kept between runs (`cache`)."""
