"""Build training manifests over the real sample data beside the repository.

    .venv/bin/python scripts/make_sample_manifest.py [--data ../shared/data] [--cache build/training-samples]

Writes ``sen12mscr.json`` (real SEN12MS-CR cloudy/clear Level-1C pairs with DSen2-CR masks, and
clear images with synthetic clouds and shadows) and ``bigearthnet.json`` (clear Level-2A
BigEarthNet patches with synthetic clouds and their real Sentinel-1) into the cache folder,
with the derived rasters (masks, synthetic cloudy images, band stacks). The sample data itself
is only read, in place: the manifests name it by absolute paths and record the data folder as
their ``external_data_roots`` (the folders outside a manifest's own that its files may lie in;
see ``topoclear.engine.training.manifest``). See
``topoclear.engine.training.sample_manifests.build_sample_manifests``.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_DATA = ROOT.parent / "shared" / "data"
DEFAULT_CACHE = ROOT / "build" / "training-samples"


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA, help="sample data folder (default %(default)s)")
    parser.add_argument("--cache", type=Path, default=DEFAULT_CACHE,
                        help="folder for the manifests and derived rasters (default %(default)s)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the synthetic clouds")
    parser.add_argument("--overwrite", action="store_true", help="recompute derived rasters that already exist")
    args = parser.parse_args(argv)

    from topoclear.engine.training.manifest import load_manifest
    from topoclear.engine.training.sample_manifests import build_sample_manifests

    if not args.data.is_dir():
        print(f"sample data not found: {args.data}", file=sys.stderr)
        return 2
    manifests = build_sample_manifests(args.data, args.cache, seed=args.seed, overwrite=args.overwrite)
    for name, path in manifests.items():
        manifest = load_manifest(path)
        counts = {}
        for sample in manifest.samples:
            counts[sample.split] = counts.get(sample.split, 0) + 1
        print(f"{name}: {path} ({', '.join(f'{n} {k}' for k, n in sorted(counts.items()))}; files outside the "
              f"cache folder only in {', '.join(manifest.external_roots) or 'none'})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
