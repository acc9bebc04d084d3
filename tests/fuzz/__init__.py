"""Fuzz targets for every parser that takes untrusted bytes (see targets.py), run by atheris.

    python -m tests.fuzz.run --list                      # the targets
    python -m tests.fuzz.run manifest -runs=1000000      # a long run of one target by hand
    python -m tests.fuzz.run manifest -max_total_time=60 # or for a minute

pytest (tests/fuzz/test_fuzz.py) runs each target for a bounded number of inputs.
"""
