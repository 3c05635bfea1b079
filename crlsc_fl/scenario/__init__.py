"""What a run is: the scenario and the federation's own component configs.

- ``config`` (:class:`~crlsc_fl.scenario.config.ScenarioConfig`: one table per component,
  composed), ``key_docs`` (``python -m crlsc_fl.scenario --write pyproject.toml README.md``
  writes the keys' defaults block and key table from the fields' descriptions),
- ``run_config`` ([scenario]), ``devices`` ([devices]: which device runs which encoder on which
  shard, the device plan), ``local_training`` ([train]), ``topology_config`` ([topology]),
  ``network`` ([network]), ``faults`` ([faults]: injected faults, decided from the seed),
- ``method_needs`` (does the scenario supply what ``train.kb-method`` declares it needs).
"""
