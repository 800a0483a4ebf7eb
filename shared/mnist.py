"""``python -m shared.mnist download|verify|sample N``: MNIST chores from the shell (the
command the docs give; the data code itself is shared/data/mnist.py)."""

import argparse
import json
import logging

from shared.config import get_settings
from shared.data.mnist import MnistError, download, load, verify

log = logging.getLogger(__name__)


def main(argv: list[str] | None = None) -> None:
    """``python -m shared.mnist download|verify|sample N``: data chores from the shell."""
    parser = argparse.ArgumentParser(prog="python -m shared.mnist", description=main.__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("download", help="fetch missing files into MNIST_DIR, verified")
    sub.add_parser("verify", help="check the files in MNIST_DIR against their sha256")
    sample = sub.add_parser("sample", help="print a POST /predict body with test image N")
    sample.add_argument("index", type=int)
    args = parser.parse_args(argv)
    settings = get_settings()
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    try:
        if args.command == "download":
            download(settings.mnist_dir, settings.mnist_mirrors)
        elif args.command == "verify":
            verify(settings.mnist_dir)
            log.info("%s: all four files verified", settings.mnist_dir)
        else:
            data = load(settings.mnist_dir)
            if not 0 <= args.index < len(data.test_labels):
                parser.error(f"index must be 0..{len(data.test_labels) - 1}")
            log.info("test image %d is a %d", args.index, data.test_labels[args.index])
            print(json.dumps({"pixels": data.test_images[args.index].tolist()}))
    except MnistError as exc:
        raise SystemExit(f"error: {exc}") from None


if __name__ == "__main__":
    main()
