#!/usr/bin/env sh
# Development secrets for deploy/compose.yaml: a consortium PKI (CA, revocation list, one party
# certificate and key per bank, an analyst client), each bank's job-store key and the shared
# join salt, all mode 0600 under deploy/certs, and the state folders the containers write.
# A real consortium issues certificates from its own CA and hands each bank only its own key.
set -eu
here=$(cd "$(dirname "$0")" && pwd)
smpc certs init --parties bank_a,bank_b,bank_c --clients analyst --out "$here/certs"
umask 077
for b in bank_a bank_b bank_c; do
    [ -f "$here/certs/$b.store_key" ] || openssl rand -hex 32 > "$here/certs/$b.store_key"
    mkdir -p "$here/state/$b"
done
[ -f "$here/certs/join_salt" ] || openssl rand -hex 32 > "$here/certs/join_salt"
echo "secrets in $here/certs; start with: SMPC_UID=\$(id -u) SMPC_GID=\$(id -g) docker compose -f $here/compose.yaml up --build -d"
