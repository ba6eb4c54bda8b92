"""Container health check: exit 0 when the collector's /healthz answers 200.

Kept dependency-free (standard library only) so it runs in the slim image without curl.
Usage: iot-healthcheck [PATH]   (default /healthz; IOT_API_PORT picks the port)
"""

# ruff: noqa: INP001  (a standalone script copied into the image, not part of a package)

import os
import sys
import urllib.error
import urllib.request


def main() -> int:
    path = sys.argv[1] if len(sys.argv) > 1 else "/healthz"
    port = os.environ.get("IOT_API_PORT", "3000")
    url = f"http://127.0.0.1:{port}{path}"
    try:
        with urllib.request.urlopen(url, timeout=3) as response:
            return 0 if response.status == 200 else 1
    except (urllib.error.URLError, OSError):
        return 1


if __name__ == "__main__":
    sys.exit(main())
