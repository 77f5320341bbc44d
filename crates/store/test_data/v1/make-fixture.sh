#!/bin/sh
# Make the v1 fixture store: run a switchboard built from the commit named in
# README.md with a fresh data directory, inside a network namespace shaped like
# the test lab (lan0 192.0.2.1/24, wan0 198.51.100.1/24, dmz0 without address),
# and configure it through the CLI only. Needs root, ip, openssl and sqlite3.
#
#   sh make-fixture.sh path/to/switchboard OUTPUT_DIR
#
# Writes OUTPUT_DIR/switchboard.db (checkpointed: no -wal file),
# OUTPUT_DIR/candidate.json and OUTPUT_DIR/plan.json (revision 2's plan).
set -eu
BIN=$(realpath "$1")
OUT=$(realpath "$2")
NS=sbfixture-$$
WORK=$(mktemp -d)
DAEMON=

cleanup() {
    [ -n "$DAEMON" ] && kill "$DAEMON" 2>/dev/null && wait "$DAEMON" 2>/dev/null
    ip netns del "$NS" 2>/dev/null || true
    rm -rf "/etc/netns/$NS" "$WORK"
}
trap cleanup EXIT

# The network: the NIC names and addresses of switchboard_system::testlab::Lab.
ip netns add "$NS"
ip -n "$NS" link set lo up
ip -n "$NS" link add lan0 type ifb
ip -n "$NS" link add wan0 type ifb
ip -n "$NS" link add dmz0 type ifb
ip -n "$NS" addr add 192.0.2.1/24 dev lan0
ip -n "$NS" addr add 198.51.100.1/24 dev wan0
ip -n "$NS" link set lan0 up
ip -n "$NS" link set wan0 up
mkdir -p "/etc/netns/$NS"
printf '127.0.0.1 localhost\n192.0.2.1 console.lan.test\n198.51.100.1 voip.example.test\n' \
    >"/etc/netns/$NS/hosts"

# A test CA and one leaf for both names, valid for a century (test material).
cd "$WORK"
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 36500 \
    -subj "/CN=Fixture Test CA" -keyout ca.key -out ca.pem \
    -addext basicConstraints=critical,CA:TRUE -addext keyUsage=critical,keyCertSign,cRLSign 2>/dev/null
openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes \
    -subj "/CN=voip.example.test" -keyout leaf.key -out leaf.csr 2>/dev/null
printf 'basicConstraints=critical,CA:FALSE\nkeyUsage=critical,digitalSignature\nextendedKeyUsage=serverAuth\nsubjectAltName=DNS:voip.example.test,DNS:console.lan.test\n' >leaf.ext
openssl x509 -req -in leaf.csr -CA ca.pem -CAkey ca.key -CAcreateserial -days 36500 \
    -extfile leaf.ext -out leaf.pem 2>/dev/null
cat leaf.pem leaf.key >bundle.pem

ip netns exec "$NS" "$BIN" --data-dir "$WORK/data" --socket "$WORK/api.sock" serve \
    2>"$WORK/daemon.log" &
DAEMON=$!
sb() { "$BIN" --socket "$WORK/api.sock" "$@"; }
i=0
until sb status >/dev/null 2>&1; do
    i=$((i + 1)); [ $i -lt 200 ] || { cat "$WORK/daemon.log"; exit 1; }; sleep 0.1
done

sb cert import voip --bundle bundle.pem
sb cert ca add ca.pem
sb cert bind sip-tls voip
sb cert bind web voip
sb cert bind console voip --nic lan0
sb nic set wan0 --hostname voip.example.test
sb nic set lan0 --hostname console.lan.test
sb preset production --internal lan0 --external wan0
sb update -m "production layout"
sb provisioning set --sip-tls-hostname voip.example.test --web-uri https://voip.example.test \
    --app-store android=https://play.example.test/app
sb port sql 3307
sb matrix allow nrpe wan0
sb update -m "sql on 3307, nrpe from outside"
sb account add --phone "+15550100" --name "Fixture phone" --username 1000
sb activate 1000
# An edit left in the candidate, not applied.
sb matrix deny nrpe wan0

sb --json revisions show 2 >"$WORK/rev2.json"
kill "$DAEMON"; wait "$DAEMON" || true; DAEMON=
sqlite3 "$WORK/data/switchboard.db" 'PRAGMA wal_checkpoint(TRUNCATE);' >/dev/null
cp "$WORK/data/switchboard.db" "$OUT/switchboard.db"
sqlite3 "$OUT/switchboard.db" 'SELECT body FROM candidate' >"$OUT/candidate.json"
sqlite3 "$OUT/switchboard.db" 'SELECT plan FROM revisions WHERE number = 2' >"$OUT/plan.json"
echo "fixture written to $OUT"
