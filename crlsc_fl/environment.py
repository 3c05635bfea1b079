"""Every environment variable the project reads, in one place (no imports: the launcher and
the apps both use it)."""

DATA_DIR_ENV = "CRLSC_DATA_DIR"  # where datasets are looked for (offline copies)
CACHE_DIR_ENV = "CRLSC_CACHE_DIR"  # server features, built KBs, dataset conversions
STATE_DIR_ENV = "CRLSC_STATE_DIR"  # the devices' state (encoders, received KBs) of every run
PROJECT_ROOT_ENV = "CRLSC_PROJECT_ROOT"  # where the ServerApp resolves a relative scenario.results-dir
MEMORY_ROOT_ENV = "CRLSC_MEMORY_ROOT_PID"  # the process tree whose memory the ServerApp samples
RAY_ADDRESS_ENV = "RAY_ADDRESS"  # Ray's own: an existing cluster for `crlsc-fl run` (see crlsc_fl.launcher.ray_cluster)

# paths a user may give relative to the directory the launcher was started in
PATH_VARIABLES = (DATA_DIR_ENV, STATE_DIR_ENV, CACHE_DIR_ENV)
