"""Plugin modules for the tests, loaded with ``-p plugins_for_tests.NAME``.

The tests put the ``tests`` folder on ``PYTHONPATH`` (subprocesses) or ``sys.path`` (in process).
"""
