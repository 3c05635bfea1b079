"""The run's outputs: the results directory and its one writer (``run_dir``), reading and
summarising it (``results``), the summary report (``report``: ``summary.json``), figures
(``plots``), disk and memory used (``footprint``), and finished runs compared (``compare``)."""
