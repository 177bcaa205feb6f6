"""Scenarios that run a real framework in its own environment (``tests/venvs.py``).

Each ``scenario_<name>.py`` runs as ``python -m tests.frameworks.scenario_<name>`` in the
environment built from ``tests/envs/<name>.txt``, traces with :func:`runtime.start_tracing`
and exits after ``Tracing.finish()``; the test that started it then reads the calls from its
receiver.
"""
