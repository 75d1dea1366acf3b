#!/usr/bin/env bash
# Development TLS certificates for Mosquitto's TLS listener: a private CA and a server certificate for
# 127.0.0.1/localhost, written to $1 (default .ubi/tls). Never use these in production: see README
# "TLS with real certificates". Idempotent: existing files are kept.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
OUT="${1:-$ROOT/.ubi/tls}"
mkdir -p "$OUT"
cd "$OUT"
if [ -f server.crt ] && [ -f ca.crt ]; then exit 0; fi
umask 077
openssl req -x509 -newkey rsa:2048 -nodes -days 825 -subj "/CN=UBI development CA" \
  -keyout ca.key -out ca.crt 2>/dev/null
openssl req -newkey rsa:2048 -nodes -subj "/CN=localhost" -keyout server.key -out server.csr 2>/dev/null
printf 'subjectAltName=DNS:localhost,IP:127.0.0.1\nextendedKeyUsage=serverAuth\n' > server.ext
openssl x509 -req -in server.csr -CA ca.crt -CAkey ca.key -CAcreateserial -days 825 \
  -extfile server.ext -out server.crt 2>/dev/null
rm -f server.csr server.ext
chmod 644 ca.crt server.crt
echo "development certificates in $OUT (CA: $OUT/ca.crt)"
