# Shell helpers shared by infra scripts (sourced, not run): installing what a script needs from
# Debian's packages. The caller has `set -euo pipefail` and defines `log`.

# A Debian package by name, installed if missing.
need_deb_pkg() { # need_deb_pkg PACKAGE
  dpkg -s "$1" >/dev/null 2>&1 && return 0
  log "installing $1"
  local sudo=""
  [ "$(id -u)" = 0 ] || sudo="sudo -n"
  export DEBIAN_FRONTEND=noninteractive
  $sudo apt-get install -y -q "$1" >/dev/null 2>&1 ||
    { $sudo apt-get update -q >/dev/null && $sudo apt-get install -y -q "$1" >/dev/null; } ||
    { echo "could not install $1 (needed by ${0##*/})" >&2; exit 1; }
}

# A command from a Debian package, installed if missing.
need_deb() { # need_deb COMMAND PACKAGE
  command -v "$1" >/dev/null 2>&1 || need_deb_pkg "$2"
}
