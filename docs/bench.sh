#!/bin/sh
# Runs every benchmark of test/bench (and pkg/gossip's own) and writes
# docs/BENCHMARKS.md. `make bench` builds bin/ first; about 12-18 minutes on
# two cores. BENCH_WORK=DIR keeps the results and every host's logs there.
set -eu
cd "$(dirname "$0")/.."

work=${BENCH_WORK:-}
if [ -z "$work" ]; then
	work=$(mktemp -d)
	trap 'rm -rf "$work"' EXIT
fi
mkdir -p "$work"
log() { printf '%s  bench.sh: %s\n' "$(date -u +%H:%M:%S)" "$*" >&2; }

# step NAME CMD...: runs CMD, records its wall time.
step() {
	name=$1
	shift
	log "$name …"
	t0=$(date +%s)
	"$@"
	t1=$(date +%s)
	echo "$name $((t1 - t0)) s" >>"$work/durations.txt"
	log "$name done in $((t1 - t0)) s"
}

for f in bin/rke2-hanode bin/rke2sim; do
	[ -x "$f" ] || { echo "bench.sh: $f missing: run make build (make bench does)" >&2; exit 1; }
done
: >"$work/durations.txt"
git rev-parse --short HEAD >"$work/commit.txt" 2>/dev/null || true

step build go build -o "$work/bench" ./test/bench
B="$work/bench"

step ttc-3-20 "$B" ttc -servers 3 -agents 20 -base 127.91.0.11 \
	-work "$work/hosts" -out "$work/ttc-3-20.json"
step ttc-5-100 "$B" ttc -servers 5 -agents 100 -in-process -base 127.92.0.11 \
	-work "$work/hosts" -out "$work/ttc-5-100.json"
step scale "$B" scale -members 10,100,500 -window 30s -converge-timeout 2m \
	-work "$work/hosts" -out "$work/scale.json"
step gossip-bench sh -c "go test -run '^\$' -bench 'Cluster/members=(10|100)\$' -benchtime 1x ./pkg/gossip/ | tee '$work/gossip-bench.txt'"
step footprint "$B" footprint -members 50 -window 1m \
	-work "$work/hosts" -out "$work/footprint.json"
step vipwait "$B" vipwait -agents 200 -up 10s,60s -out "$work/vipwait.json"
step etcd "$B" etcd -members 3 -runs 3 -settle 10s \
	-work "$work/hosts" -out "$work/etcd.json"
step heal "$B" heal -removal 10s -join 5s -base 127.97.0.11 \
	-work "$work/hosts" -out "$work/heal.json"
step upgrade "$B" upgrade -servers 3 -agents 20 -base 127.98.0.11 \
	-work "$work/hosts" -out "$work/upgrade.json"

"$B" report -dir "$work" -out docs/BENCHMARKS.md
log "wrote docs/BENCHMARKS.md"
