"""``python -m crlsc_fl.stage2``: probe table and semantic-communication figures for encoders.

Examples::

    crlsc-fl stage2 --run-dir results/main/<run id> --out results/stage2-main --jobs 2
    python -m crlsc_fl.stage2 --encoder a.pt --encoder b.pt --out /tmp/s2 --train-samples 1000

Re-running a command on the same --out continues: encoders already finished there
(<out>/encoders/<label>.json, same settings and encoder files) are not evaluated again.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Sequence
from typing import TypeVar

import torch

from crlsc_fl.accelerator import ACCELERATORS
from crlsc_fl.data.datasets import DatasetNotFoundError
from crlsc_fl.stage2.link import LinkConfig
from crlsc_fl.stage2.probes import ProbeConfig
from crlsc_fl.stage2.report import discover_encoders, make_report
from crlsc_fl.stage2.report_config import DEFAULT_BER, DEFAULT_SNR_DB, DEFAULT_TABLE_SNR_DB, ReportConfig
from crlsc_fl.validation import build_component

T = TypeVar("T")


def _list_of(kind: Callable[[str], T]) -> Callable[[str], tuple[T, ...]]:
    def parse(text: str) -> tuple[T, ...]:
        try:
            return tuple(kind(part) for part in text.split(",") if part.strip())
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected a comma-separated list of {kind.__name__}, got {text!r}") from None

    return parse


def build_parser(prog: str = "python -m crlsc_fl.stage2") -> argparse.ArgumentParser:
    """The command line of ``python -m crlsc_fl.stage2`` / ``crlsc-fl stage2``."""
    defaults = ReportConfig()
    link, probe = defaults.link, defaults.probe
    p = argparse.ArgumentParser(prog=prog, description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    src = p.add_argument_group("encoders (at least one)")
    src.add_argument("--encoder", action="append", default=[], metavar="PATH", help="encoder file from save_encoder (repeatable)")
    src.add_argument("--run-dir", action="append", default=[], metavar="DIR",
                     help="finished run (results/<scenario>/<run id>); its device encoders are read from device state (repeatable)")
    src.add_argument("--state-dir", help="device state root of the run (default: $CRLSC_STATE_DIR or the cache)")
    src.add_argument("--device-ids", type=_list_of(int), default=[], help="comma list: only these devices of each run")
    src.add_argument("--arch", help="fail unless every encoder has this architecture (e.g. resnet18)")
    src.add_argument("--stem", choices=("cifar", "imagenet"), help="fail unless every encoder has this stem")
    p.add_argument("--out", required=True, help="output directory")
    p.add_argument("--dataset", default=defaults.dataset, help="reconstruction dataset (default %(default)s)")
    p.add_argument("--probe-datasets", type=_list_of(str), default=defaults.probe_datasets,
                   help="comma list; ones that cannot be loaded or downloaded are listed as skipped (default cifar10,cifar100,stl10)")
    p.add_argument("--probes", type=_list_of(str), default=defaults.probes, help="comma list of linear,mlp")
    p.add_argument("--data-dir", help="data directory (else $CRLSC_DATA_DIR)")
    p.add_argument("--no-download", action="store_true", help="never download datasets that are not on disk")
    p.add_argument("--train-samples", type=int, default=defaults.train_samples, help="training images per dataset (default %(default)s)")
    p.add_argument("--test-samples", type=int, default=defaults.test_samples, help="test images per dataset (default %(default)s)")
    p.add_argument("--epochs", type=int, default=link.epochs, help="decoder training epochs (default %(default)s)")
    p.add_argument("--probe-epochs", type=int, default=probe.epochs, help="probe training epochs (default %(default)s)")
    p.add_argument("--layer", default=link.layer, help="encoder layer giving z_e(x) (default %(default)s)")
    p.add_argument("--probe-layer", default=defaults.probe_layer, help="encoder layer pooled for probes (default %(default)s)")
    p.add_argument("--num-codes", type=int, default=link.num_codes, help="codebook size K (default %(default)s)")
    p.add_argument("--code-groups", type=int, default=link.code_groups, help="sub-vectors per map position (default %(default)s)")
    p.add_argument("--channels", type=_list_of(str), default=defaults.channels, help="comma list of awgn,rayleigh,bsc")
    p.add_argument("--snr-db", type=_list_of(float), default=DEFAULT_SNR_DB,
                   help="SNR sweep in dB, range [-20, 40]; write --snr-db=-10,0,10 when it starts with a minus")
    p.add_argument("--ber", type=_list_of(float), default=DEFAULT_BER, help="BSC bit-error-rate sweep, range [0, 0.5]")
    p.add_argument("--table-snr-db", type=_list_of(float), default=DEFAULT_TABLE_SNR_DB,
                   help="AWGN SNRs of the paired table (paired.md), swept besides --snr-db (default %(default)s); "
                        "write --table-snr-db=-5,0 when it starts with a minus")
    p.add_argument("--figure-devices", type=int, default=defaults.figure_devices,
                   help="reconstruction / degradation figures for this many devices per topology (default %(default)s)")
    p.add_argument("--gamma", type=float, default=defaults.gamma, help="low-light gamma (default %(default)s)")
    p.add_argument("--brightness", type=float, default=defaults.brightness, help="low-light brightness (default %(default)s)")
    p.add_argument("--skip-probes", action="store_true")
    p.add_argument("--skip-link", action="store_true")
    p.add_argument("--seed", type=int, default=defaults.seed)
    p.add_argument("--jobs", type=int, default=1,
                   help="worker processes, one encoder each at a time (default %(default)s; 2 on a 2-core machine)")
    p.add_argument("--threads", type=int, default=1, help="torch CPU threads per process (default %(default)s: shared machines)")
    p.add_argument("--accelerator", choices=ACCELERATORS, default=defaults.accelerator,
                   help="where encoders, probes and links run: cpu, cuda (fails without CUDA) or auto (default %(default)s)")
    return p


def main(argv: Sequence[str] | None = None, *, prog: str = "python -m crlsc_fl.stage2") -> int:
    """Entry point; returns the exit code (2 for bad options, encoders or data)."""
    parser = build_parser(prog)
    args = parser.parse_args(argv)
    try:
        link = build_component(LinkConfig, {"layer": args.layer, "num_codes": args.num_codes, "code_groups": args.code_groups,
                                            "epochs": args.epochs, "seed": args.seed}, "report.link")
        probe = build_component(ProbeConfig, {"epochs": args.probe_epochs, "seed": args.seed}, "report.probe")
        config = build_component(ReportConfig, dict(
            dataset=args.dataset, probe_datasets=args.probe_datasets, probes=args.probes, data_dir=args.data_dir, download=not args.no_download,
            train_samples=args.train_samples, test_samples=args.test_samples, probe_layer=args.probe_layer, link=link, probe=probe,
            channels=args.channels, snr_db=args.snr_db, ber=args.ber, table_snr_db=args.table_snr_db, figure_devices=args.figure_devices,
            gamma=args.gamma, brightness=args.brightness,
            arch=args.arch, stem=args.stem, skip_probes=args.skip_probes, skip_link=args.skip_link, seed=args.seed,
            accelerator=args.accelerator,
        ), "report")
        entries = discover_encoders(args.encoder, args.run_dir, args.state_dir, args.device_ids)
        if args.threads > 0:
            torch.set_num_threads(args.threads)
        make_report(entries, args.out, config, jobs=args.jobs, threads=torch.get_num_threads())
    except (ValueError, FileNotFoundError, DatasetNotFoundError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
