"""Test support: run the real ``alertd`` CLI, run async bodies, poll, start the fakes.

- ``process``: ``alertd(*args)`` runs the CLI to completion; ``Daemon`` runs ``alertd run``.
- ``aio``: ``run(body)`` runs one async test body in a fresh loop with a hard bound (``async_test``
  is the same as a decorator); ``settle`` awaits a shared future without cancelling it.
- ``poll``: ``eventually`` (async) and ``wait_for`` (blocking) poll a condition with a bound and
  name it when they give up.
- ``fakes``: the fake exchanges by ccxt id, started in this loop (``started``) or on a thread of
  their own (``server_in_thread``), and a ccxt.pro client pointed at one (``ccxt_client``).
- ``fixtures``: pytest fixtures for the receivers and the end-to-end ``world``.
- ``configs``: config files written as a user writes them (``write_config``, ``fake_account``).
- ``feeds``: alertd's feeds against a local fake with every delay scaled down (``FAST``,
  ``account_config``, ``make_feed``, ``running``, ``streaming``, ``running_manager``, ...).
- ``snapshots``: snapshot builders in the JSON form ``alertd calc`` reads (``position``,
  ``snapshot``, ``tiers``, ``account``, ``metrics``, ``q``).
- ``service``: the daemon's ``Service`` in-process, started up but not served (``make``).
- ``inprocess``: ``alertd(*args)`` in this process, output through strict UTF-8 streams.

Nothing is imported here, so that the fake exchanges can use ``poll`` without a cycle.
"""
