#!/bin/sh
# Peer figure for rules_bench: the same fleet and the same 1,000 rules evaluated by Prometheus
# (Debian's /usr/bin/prometheus, v2.42) on one core, GOMAXPROCS=1.
#
#   sh rules/examples/rules_bench_peer.sh [WORKDIR]
#
# rules_bench writes the rules and the fleet's last hour (ending now) as OpenMetrics; promtool
# turns that into a TSDB block; Prometheus starts on it with the rules and no scrapes. Within
# the 5-minute lookback its rules see the same data as the benchmark's. The figure is the
# process CPU time per evaluation cycle (all 50 groups once), over the minutes 1 to 4 after the
# data ends, next to the sum of the groups' own evaluation times.
set -eu
DIR=${1:-$(mktemp -d)}
PORT=${PORT:-9099}
BENCH=${BENCH:-cargo run --release -q -p yunwei-rules --example rules_bench --}
mkdir -p "$DIR"
cd "$DIR"
rm -rf tsdb data.om
$BENCH --cycles 1 --warmup 0 --write-rules "$DIR/rules.yml" --write-openmetrics "$DIR/data.om" >/dev/null
promtool check rules rules.yml >/dev/null
promtool tsdb create-blocks-from openmetrics -q data.om tsdb
rm -f data.om
cat > prom.yml <<EOF
global:
  evaluation_interval: 15s
rule_files:
  - rules.yml
EOF
GOMAXPROCS=1 taskset -c 1 prometheus --config.file=prom.yml --storage.tsdb.path=tsdb \
  --storage.tsdb.retention.time=100y --web.listen-address=127.0.0.1:$PORT >prom.log 2>&1 &
PID=$!
trap 'kill $PID 2>/dev/null || true' EXIT
metrics() { curl -sf "127.0.0.1:$PORT/metrics"; }
sample() {
  metrics | awk '
    /^process_cpu_seconds_total / { cpu = $2 }
    /^prometheus_rule_group_iterations_total\{/ { it += $2 }
    /^prometheus_rule_group_last_duration_seconds\{/ { dur += $2 }
    END { printf "%s %s %s\n", cpu, it, dur }'
}
sleep 45
set -- $(sample)
CPU0=$1 IT0=$2
DURS=""
for _ in 1 2 3 4 5 6 7 8 9 10 11 12; do
  sleep 15
  set -- $(sample)
  DURS="$DURS $3"
done
CPU1=$1 IT1=$2
GROUPS_N=$(grep -c '^  - name:' rules.yml)
echo "$CPU0 $CPU1 $IT0 $IT1 $GROUPS_N $DURS" | awk '{
  cycles = ($4 - $3) / $5
  n = 0; s = 0
  for (i = 6; i <= NF; i++) { s += $i; n++ }
  printf "prometheus 2.42, GOMAXPROCS=1, one core: %.1f cycles measured\n", cycles
  printf "  process CPU per cycle:            %.1f ms\n", ($2 - $1) * 1000 / cycles
  printf "  sum of group evaluation times:    %.1f ms (mean of %d samples)\n", s * 1000 / n, n
}'
if grep -q 'level=warn' prom.log; then
  echo "warnings in $DIR/prom.log:" >&2
  grep 'level=warn' prom.log | head -3 >&2
fi
