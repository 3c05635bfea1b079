"""Drive Flower 1.42 from Python: the ``crlsc-fl`` command (``run``, ``deploy``, ``compare``,
``stage2``, ``keys``) and the runners behind ``python -m crlsc_fl.launch`` / ``python -m crlsc_fl.deploy``.

One module per concept, top (uses the others) to bottom:

* :mod:`~crlsc_fl.launcher.cli`: command lines (argparse builders shared by ``crlsc-fl`` and
  the ``python -m`` forms), what differs between simulation and deployment (:class:`Federation`),
  the one main flow of ``run`` and ``deploy``, the dispatcher;
* :mod:`~crlsc_fl.launcher.session`: :class:`FlowerSession` (one SuperLink + SuperNodes in its
  own Flower home) and :func:`execute`, one run from a validated plan;
* :mod:`~crlsc_fl.launcher.scenario`: validation, ``--set`` overrides and the merged run config,
  absolute user paths, data check, ``--resume``;
* :mod:`~crlsc_fl.launcher.ray_cluster`: an existing Ray cluster, checked before anything
  starts, and the probe that asks its nodes;
* :mod:`~crlsc_fl.launcher.report`: exit codes, the final line, the summary and device state;
* :mod:`~crlsc_fl.launcher.flower_cli`: the Flower home and environment, ``flwr ls`` /
  ``flwr supernode ls|register`` / ``flwr run --stream``;
* :mod:`~crlsc_fl.launcher.processes`: the psutil process supervisor, :func:`poll_until` (the
  one wait loop), signals, :class:`FlowerError`.

Environment variables are named and read in :mod:`crlsc_fl.environment`; a secure deployment's
CA, certificate and node keys are made and checked by :mod:`crlsc_fl.security`.

Linux (and other psutil platforms with POSIX sessions) only.
"""
