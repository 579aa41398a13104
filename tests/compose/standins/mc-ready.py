#!/usr/bin/env python3
"""`mc ready local` for the stand-in: exit 0 once the S3 gateway answers its health check."""

import sys
import urllib.request

try:
    urllib.request.urlopen("http://127.0.0.1:9000/healthz", timeout=4)
except Exception as error:
    sys.exit(f"not ready: {error}")
