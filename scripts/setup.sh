#!/usr/bin/env bash
# Installs what building, running and testing tollgate needs on Debian (a Rust toolchain is
# assumed). Idempotent: a command already present is skipped, and apt is not touched at all
# when nothing is missing. Runs apt through sudo when not root.
#
#   cmake, make, gcc      Pingora builds zlib-ng with them
#   pkg-config, openssl   native builds; the tests make TLS certificates
#   redis-server          the tests start their own redis-server processes (the distro
#                         service is neither needed nor started)
#   systemd-analyze       the test that verifies systemd/tollgate.service
#   curl                  scripts/run-example.sh, the README's examples
#   python3               scripts/module-cycles.py (no module import cycles), bench config writers
#   promtool              `promtool check metrics` in the tests; package prometheus
#   wrk (optional)        benches/load/run.sh
# The tests fail (they do not skip) when redis-server, systemd-analyze or promtool is missing.
set -euo pipefail

as_root() {
    if [ "$(id -u)" -eq 0 ]; then
        "$@"
    elif command -v sudo >/dev/null; then
        sudo "$@"
    else
        echo "setup: not root and no sudo: cannot run $*" >&2
        return 1
    fi
}

# command:package pairs.
required=(cmake:cmake make:make cc:gcc pkg-config:pkg-config redis-server:redis-server
    redis-cli:redis-tools systemd-analyze:systemd curl:curl openssl:openssl
    promtool:prometheus python3:python3)
optional=(wrk:wrk)

missing() { # prints the packages whose command is absent
    local pair
    for pair in "$@"; do
        command -v "${pair%%:*}" >/dev/null || echo "${pair#*:}"
    done
}

mapfile -t need < <(missing "${required[@]}")
mapfile -t want < <(missing "${optional[@]}")

if [ ${#need[@]} -gt 0 ] || [ ${#want[@]} -gt 0 ]; then
    echo "setup: installing ${need[*]} ${want[*]}"
    # Keep apt from starting the services it installs (redis-server, prometheus): nothing here
    # needs them. Only a policy file we created is removed again.
    policy=/usr/sbin/policy-rc.d
    if [ ! -e "$policy" ]; then
        printf '#!/bin/sh\nexit 101\n' | as_root tee "$policy" >/dev/null
        as_root chmod 755 "$policy"
        trap 'as_root rm -f "$policy"' EXIT
    fi
    apt_get() { as_root env DEBIAN_FRONTEND=noninteractive apt-get -y -q "$@"; }
    apt_get update
    if [ ${#need[@]} -gt 0 ]; then
        apt_get install --no-install-recommends "${need[@]}" || {
            echo "setup: ERROR: could not install the required packages: ${need[*]}" >&2
            exit 1
        }
    fi
    for pkg in "${want[@]}"; do
        apt_get install --no-install-recommends "$pkg" ||
            echo "setup: note: optional package $pkg could not be installed; continuing without it" >&2
    done
fi

mapfile -t still < <(missing "${required[@]}")
if [ ${#still[@]} -gt 0 ]; then
    echo "setup: ERROR: still missing after install: ${still[*]}" >&2
    exit 1
fi

# The toolchain itself: cargo, plus rustfmt and clippy for scripts/test.sh.
if ! command -v cargo >/dev/null; then
    echo "setup: ERROR: cargo not found; install a Rust toolchain (https://rustup.rs) first" >&2
    exit 1
fi
for component in rustfmt clippy; do
    sub=${component/rustfmt/fmt}
    if ! cargo "$sub" --version >/dev/null 2>&1; then
        echo "setup: adding the $component component"
        rustup component add "$component" || {
            echo "setup: ERROR: cargo $sub is missing and rustup could not add $component" >&2
            exit 1
        }
    fi
done

echo "setup: ok"
