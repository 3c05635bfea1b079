"""Drive Flower 1.42 from Python: the ``crlsc-fl`` command (``run``, ``deploy``, ``compare``,
``stage2``, ``keys``) and the runners behind ``python -m crlsc_fl.launch`` / ``python -m crlsc_fl.deploy``.

One module per job:

* :mod:`~crlsc_fl.launcher.cli`: command lines (argparse builders shared by ``crlsc-fl`` and
  the ``python -m`` forms), the one main flow of ``run`` and ``deploy``, the dispatcher;
* :mod:`~crlsc_fl.launcher.modes`: what differs between simulation and deployment;
* :mod:`~crlsc_fl.launcher.scenario`: validation, absolute user paths, data check, ``--resume``;
* :mod:`~crlsc_fl.launcher.overrides`: ``--set key=value`` and the merged run config;
* :mod:`~crlsc_fl.launcher.environment`: Flower home, environment variables, connection;
* :mod:`~crlsc_fl.launcher.session`: :class:`FlowerSession`, one SuperLink (+ SuperNodes);
* :mod:`~crlsc_fl.launcher.credentials`: a secure deployment's CA, certificate and node keys,
  checked before anything starts; :mod:`~crlsc_fl.launcher.keys`: ``crlsc-fl keys``, making them;
* :mod:`~crlsc_fl.launcher.processes`: the psutil process supervisor;
* :mod:`~crlsc_fl.launcher.flower_cli`: ``flwr ls`` / ``flwr supernode ls`` / ``flwr run --stream``;
* :mod:`~crlsc_fl.launcher.polling`: :func:`poll_until`, the one wait loop;
* :mod:`~crlsc_fl.launcher.runner`: one run from a plan; :mod:`~crlsc_fl.launcher.outcome`:
  exit codes and the final line; :mod:`~crlsc_fl.launcher.report`: summary and device state;
* :mod:`~crlsc_fl.launcher.signals`: SIGTERM as Ctrl-C, signals deferred during cleanup.

Linux (and other psutil platforms with POSIX sessions) only.
"""
