"""Session stores: the ``SessionStore`` contract and the built-in backends.

``memory`` (process-local), ``cache`` (Redis through Django's cache config),
``redis`` (Redis or Redis Cluster from a URL or client factory) and ``db``
(the Django ORM). Each backend lives in its own module so that
importing one never imports another's dependencies.
"""
