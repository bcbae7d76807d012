"""System checks: a setting that cannot work fails ``manage.py check``, not a request.

Importing this package registers the app's own checks (tag ``aixyz_sessions``;
``payments``, ``tools`` and ``agent`` register theirs in their ``checks``
modules):

* :mod:`.store`: ``AIXYZ_SESSION_STORE`` builds a store that accepts its options;
* :mod:`.workers`: in-memory parts (store, replay guard) under several worker
  processes (E013) or with ``DEBUG`` off (W010, W103);
* :mod:`.served`: the project serves tools without ``aixyz_sessions.asgi`` (W014);
* :mod:`.startup`: tables not migrated (E012, a database check), and the
  start-up refusal: servers do not run ``manage.py check``, so the ASGI
  application and the payment middleware run these checks themselves.
"""

from __future__ import annotations

from . import served, startup, store, workers

__all__ = ["served", "startup", "store", "workers"]
