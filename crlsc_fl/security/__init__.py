"""The credentials of a secure (TLS) Flower deployment: a CA, the SuperLink's certificate and
the SuperNodes' keys; making them (:mod:`~crlsc_fl.security.keys`, ``crlsc-fl keys``) and
checking them (:mod:`~crlsc_fl.security.credentials`).

A package of its own, outside :mod:`crlsc_fl.launcher`, because it is a separate concept from
launching: a small PKI built on ``cryptography`` that knows nothing of scenarios, processes or
Flower's CLI. The launcher only consumes it (``crlsc-fl deploy --keys DIR`` checks a directory
before anything starts, or makes a fresh set per run), and an operator uses it on its own
(``crlsc-fl keys`` on one host, then copying the files to the SuperLink and device hosts).
"""
