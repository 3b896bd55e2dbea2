#!/usr/bin/env bash
# The benchmark command: berth against dockerd and podman in one run. See bench/run.py.
exec python3 "$(dirname "$0")/run.py" "$@"
