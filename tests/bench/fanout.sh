#!/usr/bin/env bash
# Fan-out measurement (issue 4): `true` on N hosts with omserver, cold (a
# fresh worker, so every host needs a new SSH session) and warm (the same
# job again over the pooled sessions), beside pssh on the same hosts in the
# same run.  Also the worker's CPU per host and its RSS per open session.
# Not part of make check.  `make bench` (bench/run.sh, issue 7) grew from it
# and does all of this beside pdsh, clush and ansible too; this stays as a
# quick look at one tool.
#
#   tests/bench/fanout.sh [N...]     default: 100 500; needs root and pssh
#
# The hosts are inventory names b0001..bN spread over the 8 loopback
# addresses of the demo sshd (127.0.0.11-14, .21-24, one port).  Sessions are
# pooled per inventory host, so N hosts means N sessions, as with N machines.
# Output: one line per measurement, then a markdown table.
set -uo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source=tests/fixture/lib.sh
. "$HERE/../fixture/lib.sh"

SIZES=("$@")
((${#SIZES[@]})) || SIZES=(100 500)
FORKS=${OM_BENCH_FORKS:-100}
BASE=${OM_BENCH_BASEPORT:-26460}
SSHPORT=$((BASE + 1))
OM_LOG_LEVEL=warn

command -v parallel-ssh >/dev/null || {
	echo "fanout: parallel-ssh (Debian package pssh) is not installed" >&2
	exit 2
}
om_fixture_reap omserver-bench
DIR=$(om_fixture_mkdir omserver-bench) || exit 1
trap 'om_platform_stop "$DIR"' EXIT
om_platform_start "$DIR" "$BASE" || exit 1
# shellcheck disable=SC1091
. "$DIR/env"
OMCTL=$OM_BIN/omctl
ADDRS=()
for h in "${OM_DEMO_HOSTS[@]}"; do ADDRS+=("${h##*:}"); done

now_ms() { echo $(($(date +%s%N) / 1000000)); }
# utime+stime of a pid in ms
cpu_ms() { awk -v hz="$(getconf CLK_TCK)" '{ print int(($14 + $15) * 1000 / hz) }' "/proc/$1/stat"; }
rss_kb() { awk '/^VmRSS:/ { print $2 }' "/proc/$1/status"; }
worker_pid() { om__pidfile_ours "$DIR/worker-bj-1.pid" "$DIR"; }
stop_worker() {
	local pid
	pid=$(om__pidfile_ours "$DIR/worker-$1.pid" "$DIR") && kill "$pid"
	for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || return 0; sleep 0.1; done
}
restart_bj1() {
	local i
	stop_worker bj-1
	OM_WORKER_ARGS="--max-sessions 2000 --session-idle 600" om_worker_start "$DIR" bj-1 bj
	for ((i = 0; i < 100; i++)); do
		"$OMCTL" workers list 2>/dev/null | grep -qE "^bj-1 +[a-z]+ +connected " && return 0
		sleep 0.1
	done
	echo "fanout: bj-1 did not reconnect" >&2
	exit 1
}
# one worker serves every bench host, so its CPU and memory are the measure
stop_worker bj-2
stop_worker sh-1

maxn=0
for n in "${SIZES[@]}"; do ((n > maxn)) && maxn=$n; done
{
	echo "[bench]"
	for ((i = 1; i <= maxn; i++)); do
		printf 'b%04d ansible_host=%s ansible_port=%s ansible_user=%s\n' "$i" \
			"${ADDRS[$(((i - 1) % ${#ADDRS[@]}))]}" "$SSHPORT" "$OM_SSH_USER"
	done
	printf '\n[bench:vars]\nidc=bj\n'
} >"$DIR/bench.ini"
"$OMCTL" hosts import "$DIR/bench.ini" >/dev/null || exit 1
# pssh: the same addresses, key and known_hosts
for ((i = 1; i <= maxn; i++)); do
	echo "${ADDRS[$(((i - 1) % ${#ADDRS[@]}))]}"
done >"$DIR/pssh.hosts.all"

# om_timed NAME N SELECTOR PID: one omctl run of `true`; sets MS and CPU (the worker's)
om_timed() {
	local name=$1 n=$2 sel=$3 pid=$4 c0 t0 rc ok
	c0=$(cpu_ms "$pid")
	t0=$(now_ms)
	"$OMCTL" run -t "$sel" -m shell -a true --forks "$FORKS" >"$DIR/$name.out" 2>&1
	rc=$?
	MS=$(($(now_ms) - t0))
	CPU=$(($(cpu_ms "$pid") - c0))
	ok=$(grep -c ': ok (' "$DIR/$name.out")
	echo "omserver $name N=$n: ${MS} ms, $ok ok (exit $rc), worker CPU ${CPU} ms"
}

ROWS=()
for n in "${SIZES[@]}"; do
	sel="group:bench"
	((n < maxn)) && sel=$(printf 'b%04d,' $(seq 1 "$n") | sed 's/,$//')
	head -n "$n" "$DIR/pssh.hosts.all" >"$DIR/pssh.hosts"

	restart_bj1
	pid=$(worker_pid)
	rss0=$(rss_kb "$pid")
	om_timed cold "$n" "$sel" "$pid"
	cold_ms=$MS cold_cpu=$CPU
	sleep 1
	rss1=$(rss_kb "$pid")
	om_timed warm "$n" "$sel" "$pid"
	warm_ms=$MS
	echo "worker RSS: ${rss0} kB with no session, ${rss1} kB with $n pooled sessions:" \
		"$(((rss1 - rss0) / n)) kB per session"

	t0=$(now_ms)
	parallel-ssh -p "$FORKS" -h "$DIR/pssh.hosts" -l "$OM_SSH_USER" -t 60 \
		-x "-p $SSHPORT -i $DIR/ssh/id_ed25519 -o UserKnownHostsFile=$DIR/ssh/known_hosts -o StrictHostKeyChecking=yes -o BatchMode=yes -o KexAlgorithms=curve25519-sha256" \
		true >"$DIR/pssh.out" 2>&1
	rc=$?
	t1=$(now_ms)
	okp=$(grep -c 'SUCCESS' "$DIR/pssh.out")
	pssh_ms=$((t1 - t0))
	echo "pssh N=$n: ${pssh_ms} ms, $okp ok (exit $rc)"
	ROWS+=("| $n | $cold_ms ms, $((n * 1000 / (cold_ms ? cold_ms : 1))) hosts/s, $((cold_cpu * 1000 / n)) us CPU/host | $warm_ms ms, $((n * 1000 / (warm_ms ? warm_ms : 1))) cmds/s | $pssh_ms ms, $((n * 1000 / (pssh_ms ? pssh_ms : 1))) hosts/s | $(awk -v a="$pssh_ms" -v b="$cold_ms" 'BEGIN { printf "%.2f", a / b }') | $(((rss1 - rss0) / n)) kB |")
done

echo
echo "| N | omserver cold | omserver warm | pssh (cold) | pssh/omserver cold | worker RSS/session |"
echo "|---|---|---|---|---|---|"
printf '%s\n' "${ROWS[@]}"
