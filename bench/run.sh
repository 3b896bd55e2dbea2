#!/usr/bin/env bash
# The benchmark command: berth against dockerd and podman in one run. See bench/run.py.
#
# The scale scenario draws its plots with matplotlib (Debian's python3-matplotlib): installed
# here when it is missing and apt-get is there (not for --quick, which draws nothing); without
# it the plots are skipped with a message. Debian's python3 runs the bench (the package is
# installed for it), whatever python3 comes first on PATH.
py=python3
[ -x /usr/bin/python3 ] && py=/usr/bin/python3
quick=0
for a in "$@"; do [ "$a" = --quick ] && quick=1; done
if [ "$quick" = 0 ] && ! "$py" -c 'import matplotlib' 2>/dev/null; then
  if command -v apt-get >/dev/null && [ "$(id -u)" = 0 ]; then
    echo "installing python3-matplotlib for the plots" >&2
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends python3-matplotlib >/dev/null ||
      echo "python3-matplotlib could not be installed: the plots will be skipped" >&2
  else
    echo "python3-matplotlib is missing and apt-get is not available: the plots will be skipped" >&2
  fi
fi
exec "$py" "$(dirname "$0")/run.py" "$@"
