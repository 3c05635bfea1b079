"""The Flower layer: the ServerApp (:mod:`.server`), the ClientApp (:mod:`.client`), the Grid
wrapper that streams a round's replies (:mod:`.grid`), and the server side of stage 2
(:mod:`.stage2_phase`). Messages and records are built and parsed in one place below it,
:mod:`crlsc_fl.codec`, which the strategies use too. Everything below it
(``crlsc_fl.scenario``, ``crlsc_fl.device``, ``crlsc_fl.bookkeeping``, ``crlsc_fl.outputs``,
``strategies``) sees plain Python values, except the strategies' Flower hooks."""
