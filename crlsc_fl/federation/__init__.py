"""What the federation does, below the Flower layer (:mod:`crlsc_fl.flower`).

- Device side: ``device_round`` (one device's round), ``device_store`` (its state on disk),
  ``devices`` (which device runs which encoder on which shard).
- Server side: ``knowledge_delivery`` (who holds which KB, latest PKBs, every hop),
  ``ledger`` (bytes and simulated seconds per link), ``failures`` and ``faults`` (failed
  rounds, injected faults), ``checkpoint`` (resume), ``run_dir`` (the one writer of a run's
  results directory), ``results`` and ``plots`` (reading and summarising it), ``footprint``
  and ``run_state`` (disk and memory used by a run).
- Both: ``stage2_phase`` (stage 2: the request on the server, the decoder on the device).
"""
