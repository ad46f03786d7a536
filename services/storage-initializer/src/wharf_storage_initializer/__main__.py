"""`wharf-storage-initializer SRC_URI DEST_DIR [SRC_URI DEST_DIR ...]` (KServe's entrypoint shape).

Exit codes: 0 done; 1 unexpected error; 2 usage; then one per failure class (see
`wharf_storage.errors`): 3 unsupported URI, 4 source not found, 5 access denied, 6 unsafe path,
7 checksum mismatch, 8 transfer failed after retries (or a host that does not resolve, or
unpacking that would exceed the expansion limits), 9
invalid archive, 10 destination unusable (a file, or under a file). On failure the last
line on stderr is `wharf-storage-initializer: <Class>: <reason>`.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
import time
from collections.abc import Sequence

from wharf_storage import StorageError, download
from wharf_storage.errors import EXIT_CODES
from wharf_storage.redaction import RedactingFilter, scrub, secret_values

PROG = "wharf-storage-initializer"


def _parser() -> argparse.ArgumentParser:
    codes = ", ".join(f"{code} {name}" for name, code in EXIT_CODES.items())
    parser = argparse.ArgumentParser(
        prog=PROG,
        description="Download model URIs into folders (KServe's storage-initializer shape).",
        epilog=f"exit codes: {codes}",
    )
    parser.add_argument("pairs", nargs="+", metavar="SRC_URI DEST_DIR", help="source and folder")
    parser.add_argument(
        "--copy", action="store_true", help="copy local sources instead of linking them"
    )
    return parser


def _setup_logging() -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    handler.addFilter(RedactingFilter(os.environ))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(logging.INFO)
    for noisy in ("botocore", "boto3", "s3transfer", "urllib3", "azure", "httpx", "google"):
        logging.getLogger(noisy).setLevel(logging.WARNING)


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    pairs: list[str] = args.pairs
    if len(pairs) % 2:
        _parser().error("expected SRC_URI DEST_DIR pairs")
    _setup_logging()
    log = logging.getLogger(PROG)
    secrets = secret_values(os.environ)
    for src, dest in zip(pairs[::2], pairs[1::2], strict=True):
        start = time.monotonic()
        try:
            result = download(src, dest, copy=args.copy)
        except StorageError as exc:
            print(f"{PROG}: {type(exc).__name__}: {scrub(exc.reason, secrets)}", file=sys.stderr)
            return exc.exit_code
        except Exception as exc:
            log.debug("unexpected failure", exc_info=True)
            print(f"{PROG}: {type(exc).__name__}: {scrub(str(exc), secrets)}", file=sys.stderr)
            return 1
        log.info(
            "%s -> %s: %d files, %d bytes (%d fetched) in %.1fs",
            result.uri,
            result.path,
            result.files,
            result.bytes,
            result.fetched_bytes,
            time.monotonic() - start,
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
