#!/usr/bin/env bash
# Installs everything the local stack needs on a Debian machine, idempotently:
#   - Mosquitto broker and clients (Debian packages)
#   - Apache Kafka broker jars (Maven Central) into .ubi/kafka-libs
#   - the Python environment (.venv) with the project and its test extras
# Re-running skips what is already there. Needs root (or sudo) for apt-get only.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
STATE="${UBI_HOME:-$ROOT/.ubi}"
mkdir -p "$STATE"

say() { printf '\033[1m[install]\033[0m %s\n' "$*"; }

# --- Mosquitto --------------------------------------------------------------
if ! command -v mosquitto >/dev/null && [ ! -x /usr/sbin/mosquitto ] || ! command -v mosquitto_pub >/dev/null; then
  say "installing mosquitto and mosquitto-clients (apt-get)"
  SUDO=""; [ "$(id -u)" -ne 0 ] && SUDO="sudo"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends mosquitto mosquitto-clients >/dev/null
  # Debian's package may start its own service on port 1883; we run our own instance with our config.
  if command -v systemctl >/dev/null && systemctl is-active --quiet mosquitto 2>/dev/null; then
    $SUDO systemctl stop mosquitto || true; $SUDO systemctl disable mosquitto || true
  fi
  pkill -x mosquitto 2>/dev/null || true
else
  say "mosquitto present"
fi
# The broker plugin that keeps devices out of the bridge's shared subscription is compiled by `ubi stack up`.
if ! command -v cc >/dev/null || [ ! -f /usr/include/mosquitto_broker.h ] || [ ! -f /usr/include/mosquitto.h ]; then
  say "installing gcc and the Mosquitto headers (apt-get) for the share-group guard plugin"
  SUDO=""; [ "$(id -u)" -ne 0 ] && SUDO="sudo"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends gcc libc6-dev mosquitto-dev libmosquitto-dev >/dev/null
fi

# kcat: the integration tests check with it that Kafka refuses clients without credentials.
if ! command -v kcat >/dev/null; then
  say "installing kcat (apt-get)"
  SUDO=""; [ "$(id -u)" -ne 0 ] && SUDO="sudo"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends kcat >/dev/null
fi

# Chromium and its WebDriver: the portal's browser tests drive a real headless Chromium (tests/test_portal_browser.py);
# CJK fonts so Chinese statements render (and screenshot) with real glyphs.
if ! command -v chromium >/dev/null || ! command -v chromedriver >/dev/null || [ ! -d /usr/share/fonts/opentype/noto ]; then
  say "installing chromium, chromium-driver and fonts-noto-cjk (apt-get) for the portal's browser tests"
  SUDO=""; [ "$(id -u)" -ne 0 ] && SUDO="sudo"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends chromium chromium-driver fonts-noto-cjk >/dev/null
fi

# --- Kafka jars -------------------------------------------------------------
command -v java >/dev/null || { echo "error: Java 17+ is required to run Kafka (install openjdk-17-jre-headless)" >&2; exit 2; }
LIBS="$STATE/kafka-libs"
if [ ! -f "$LIBS/.complete" ]; then
  command -v mvn >/dev/null || { echo "error: Maven is required to fetch the Kafka broker jars (apt-get install maven)" >&2; exit 2; }
  say "fetching Kafka broker jars from Maven Central into $LIBS"
  rm -rf "$LIBS"; mkdir -p "$LIBS"
  mvn -B -q -f "$ROOT/deploy/local/kafka/pom.xml" \
    org.apache.maven.plugins:maven-dependency-plugin:3.8.1:copy-dependencies \
    -DoutputDirectory="$LIBS" -DincludeScope=runtime
  touch "$LIBS/.complete"
else
  say "kafka jars present ($(ls "$LIBS" | wc -l) files)"
fi

# --- Python environment -----------------------------------------------------
VENV="$ROOT/.venv"
PY="${PYTHON:-python3}"
if [ ! -x "$VENV/bin/python" ]; then
  say "creating Python environment in .venv"
  "$PY" -m venv "$VENV"
fi
STAMP="$VENV/.ubi-installed"
if [ ! -f "$STAMP" ] || [ "$ROOT/pyproject.toml" -nt "$STAMP" ]; then
  say "installing Python packages (pip)"
  "$VENV/bin/pip" install -q --upgrade pip
  "$VENV/bin/pip" install -q -e "$ROOT[test,dev]"
  touch "$STAMP"
else
  say "python environment up to date"
fi
say "done"
