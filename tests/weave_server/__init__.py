"""Weave's own trace server code behind the service's HTTP routes, for the contract stage.

:mod:`.app` runs in the ``weave_sqlite`` environment (``tests/envs/weave_sqlite.txt``), not in
the package's: ``tests/test_weave_server.py`` starts it with that environment's Python.
"""
