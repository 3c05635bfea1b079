"""The Flower layer: the ServerApp (:mod:`.server`), the ClientApp (:mod:`.client`), the one
place where messages and records are built and parsed (:mod:`.codec`), and the Grid wrapper
that streams a round's replies (:mod:`.grid`). Everything below it (``crlsc_fl.federation``,
``strategies``) sees plain Python values, except the strategies' Flower hooks."""
