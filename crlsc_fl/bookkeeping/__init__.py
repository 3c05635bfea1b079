"""The server's records: who holds which KB, latest PKBs and every hop (``knowledge_delivery``),
bytes and simulated seconds per link (``ledger``), failed rounds (``failures``), disk used by a
run's state (``run_state``) and resuming (``checkpoint``)."""
