"""The device's work: one round (``device_round``), its state on disk (``device_store``),
where it ran (``placement``), and the device side of stage 2 (``stage2_decoder``)."""
