#!/usr/bin/env bash
# shellcheck disable=SC2317 # helpers are called indirectly, through check
# Network partition of a worker (issue 5 item 10): real PostgreSQL, one sshd
# standing in for 8 hosts, om-master, worker bj-1 (IDC bj) in the root network
# namespace and worker sh-1, the only one of IDC sh, in a network namespace of
# its own (omnsp0) joined to the root namespace by a veth pair
# (vethomp0 10.213.0.1/30 in the root namespace, vethomp1 10.213.0.2/30 in
# omnsp0).  The master listens for workers on 0.0.0.0; the four sh hosts are
# addresses 10.213.1.21-24 on vethomp0 (sshd listens there), reached from
# omnsp0 through a route via 10.213.0.1.  While sh-1 runs a job that prints a
# line every 0.5 s for 15 s, its side of the link goes down (`ip link set
# vethomp1 down` in omnsp0; the process keeps running, only its packets stop)
# for longer than 3 heartbeats: its hosts must become lost, with a reason
# naming sh-1 and the missed heartbeats, never ok, and the master must go on
# serving IDC bj.  Then the link comes back: sh-1 must reconnect, its late
# results must replace lost, and the stored output must hold every line once
# (invariants I1-I3 of durable.sh on the database); what omctl run printed
# must have no line twice and none out of order.  Then the same for commands
# that end while their worker is cut off: exit and last lines arrive late.
# Prints "ok - NAME" / "not ok - NAME"; exits 1 if any case failed.  Needs root
# and network namespaces (else "ok - ... # SKIP").
#
#   OM_IT_BASEPORT   first of 4 ports (default 26560; 26560..26569 are this test's)
#   OM_IT_KEEP=1     keep the platform directory after a failure (the
#                    namespace and the veth pair are removed anyway)
set -uo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source=tests/fixture/lib.sh
. "$HERE/../fixture/lib.sh"

IT_NAME=omserver-itp
OM_IT_BASEPORT=${OM_IT_BASEPORT:-26560}
# Short heartbeats: a worker silent for 6 s is gone (3 heartbeats).
OM_MASTER_ARGS="--pending-timeout 3 --heartbeat-ms 2000"

# The network: names and addresses of this test only.
NS=omnsp0 VROOT=vethomp0 VNS=vethomp1
ROOT_IP=10.213.0.1 NS_IP=10.213.0.2 HOST_NET=10.213.1.0/24
NSW=sh-1 # the worker in the namespace, alone in its IDC
# The sh hosts live behind the veth (sshd listens on their addresses there).
OM_DEMO_HOSTS=(
	web-1:bj:127.0.0.11 web-2:bj:127.0.0.12 web-3:bj:127.0.0.13 db-1:bj:127.0.0.14
	web-4:sh:10.213.1.21 web-5:sh:10.213.1.22 db-2:sh:10.213.1.23 cache-1:sh:10.213.1.24
)
OM_DEMO_WORKERS=(bj-1:bj "$NSW:sh")
SH_HOSTS=(web-4 web-5 db-2 cache-1)

skip() {
	echo "ok - network partition of a worker # SKIP $*"
	exit 0
}

# Removes the veth pair (both ends) and the namespace; quiet when they are gone.
net_down() {
	ip link del "$VROOT" 2>/dev/null
	ip netns del "$NS" 2>/dev/null
	return 0
}

# The route from omnsp0 to the host addresses (gone whenever vethomp1 goes down).
ns_route() { ip -n "$NS" route replace "$HOST_NET" via "$ROOT_IP" dev "$VNS"; }

net_up() {
	ip netns add "$NS" || return 1
	ip link add "$VROOT" type veth peer name "$VNS" netns "$NS" || return 1
	ip addr add "$ROOT_IP/30" dev "$VROOT" || return 1
	local i
	for i in 21 22 23 24; do ip addr add "10.213.1.$i/32" dev "$VROOT" || return 1; done
	ip link set "$VROOT" up || return 1
	ip -n "$NS" link set lo up || return 1
	ip -n "$NS" addr add "$NS_IP/30" dev "$VNS" || return 1
	ip -n "$NS" link set "$VNS" up || return 1
	ns_route || return 1
}

[[ $(id -u) -eq 0 ]] || skip "needs root"
command -v ip >/dev/null || skip "no ip (iproute2)"
# What a killed run of this test left behind (these names are ours alone).
net_down
if ! ip netns add "$NS" 2>/dev/null; then
	skip "ip netns add is not permitted here"
fi
ip netns del "$NS"
trap net_down EXIT
if ! net_up 2>"/tmp/omserver-itp-net.$$"; then
	echo "not ok - platform start"
	echo "# setting up namespace $NS and veth $VROOT/$VNS failed:"
	sed 's/^/# /' "/tmp/omserver-itp-net.$$"
	rm -f "/tmp/omserver-itp-net.$$"
	exit 1
fi
rm -f "/tmp/omserver-itp-net.$$"

# shellcheck source=tests/fixture/itlib.sh
. "$HERE/../fixture/itlib.sh"
# itlib set its own EXIT trap: stop the platform (the worker in the namespace
# with it), then remove the network.
trap 'cleanup; net_down' EXIT

# The master listens for workers on every address (the one worker-listen URL
# must serve 127.0.0.1 for bj-1 and $ROOT_IP for the namespace): the fixture's
# om_master_start with that one word changed.
# shellcheck disable=SC2016 # $wport is text here
eval "$(declare -f om_master_start |
	sed 's|--worker-listen "tcp://127.0.0.1:$wport"|--worker-listen "tcp://0.0.0.0:$wport"|')"
# shellcheck disable=SC2016
if ! declare -f om_master_start | grep -qF 'tcp://0.0.0.0:$wport'; then
	echo "not ok - platform start"
	echo "# om_master_start of tests/fixture/lib.sh changed: cannot make the master listen on 0.0.0.0"
	exit 1
fi

# The fixture's om_worker_start, for the worker in the namespace: run through
# `ip netns exec` (which execs the worker: the pid is the worker's), dialing
# the master at the root end of the veth.
eval "om__worker_start_root() $(declare -f om_worker_start | tail -n +2)"
om_worker_start() {
	local dir=$1 name=$2 idc=$3 port enroll=
	if [[ $name != "$NSW" ]]; then
		om__worker_start_root "$@"
		return
	fi
	port=$(cat "$dir/master.wport") || return 1
	[[ -s $dir/worker-$name.enroll ]] && enroll=$dir/worker-$name.enroll
	if [[ ! -f $dir/worker-$name.known_hosts ]]; then
		cp "$dir/ssh/known_hosts" "$dir/worker-$name.known_hosts" || return 1
	fi
	ip netns exec "$NS" "$OM_BIN/om-worker" --name "$name" --idc "$idc" \
		--master "tcp://$ROOT_IP:$port" --master-key "$(cat "$dir/master.pub")" \
		--key "$dir/worker-$name.key" \
		${enroll:+--enroll-token-file "$enroll"} \
		--ssh-key "$dir/ssh/id_ed25519" --known-hosts "$dir/worker-$name.known_hosts" \
		--ssh-user "$OM_SSH_USER" --plugins "$OM_PLUGINS" --modules "$OM_MODULES" \
		--log-level "$OM_LOG_LEVEL" \
		</dev/null >>"$dir/worker-$name.log" 2>&1 &
	echo "$!" >"$dir/worker-$name.pid"
}

if ! om_platform_start "$DIR" "$BASE" 2>"$T/start.err"; then
	echo "not ok - platform start"
	sed '/^#/!s/^/# /' "$T/start.err"
	exit 1
fi
echo "ok - platform start (pg $BASE, sshd $SSHPORT on 127.0.0.11-14 and 10.213.1.21-24, master $WPORT/$CPORT, bj-1 and $NSW (in netns $NS) connected)"
NPASS=$((NPASS + 1))
# shellcheck disable=SC1091
. "$DIR/env"

# --- helpers (the rest are in itlib.sh) ----------------------------------------------------
worker_state() { "$OMCTL" workers list 2>/dev/null | awk -v w="$1" '$1 == w { print $3 }'; }
count_state() { q "SELECT count(*) FROM job_hosts WHERE job_id = $1 AND state = '$2'"; }
# JOB N: every host of JOB has at least N lines of stdout stored
stored_at_least() {
	[[ $(q "SELECT count(*) FROM (SELECT host FROM job_events WHERE job_id = $1 AND kind = 1
	        AND stream = 1 GROUP BY host HAVING count(*) >= $2) x") -ge ${#SH_HOSTS[@]} ]]
}
# JOB HOST N: the stored stdout of HOST is exactly the lines 1..N
stored_exact() {
	[[ $(q "SELECT md5(string_agg(data, ''::bytea ORDER BY seq)) FROM job_events
	        WHERE job_id = $1 AND host = '$2' AND kind = 1 AND stream = 1") == \
		$(seq 1 "$3" | md5sum | cut -d' ' -f1) ]]
}
stored_lines() {
	q "SELECT count(*) || ' chunks, ' || coalesce(sum(length(data)), 0) || ' bytes' FROM job_events
	   WHERE job_id = $1 AND host = '$2' AND kind = 1 AND stream = 1"
}
# NAME HOST N: omctl printed "HOST | 1" .. "HOST | K" for some 1 <= K <= N, each once, in
# order, and nothing else as output of HOST.  (omctl run ends when the hosts are lost: the
# lines that come late are stored, not printed.)
lines_prefix() {
	local got want k
	got=$(grep -E "^$2 \| " "$T/$1.out" | sed "s/^$2 | //" | tr '\n' ' ')
	k=$(wc -w <<<"$got")
	((k >= 1 && k <= $3)) || return 1
	want=$(seq 1 "$k" | tr '\n' ' ')
	[[ $got == "$want" ]]
}
printed() { grep -cE "^$2 \| " "$T/$1.out"; }

NLINES=30 # the job prints 1..30, one line every 0.5 s: 15 s
JOB=0
CUT_MS=0 RESTORED_MS=0

# --- a. the link of sh-1 goes down mid-job: its hosts become lost, never ok ------------------
case_cut() {
	local prev i st ok_seen='' lost=0 reason bg h
	begin
	prev=$(latest_job)
	run_bg a -t 'idc:sh' -m shell \
		-a "for i in \$(seq 1 $NLINES); do echo \$i; sleep 0.5; done" --timeout 90
	bg=$BGPID
	if ! JOB=$(wait_new_job "$prev"); then
		ERRS+=("no job was created")
		JOB=0
	fi
	# Mid-stream: every host has delivered a few lines (at most 15 s).
	for ((i = 0; i < 150; i++)); do
		stored_at_least "$JOB" 3 && break
		sleep 0.1
	done
	check "the hosts did not stream 3 lines each before the cut: $(host_states "$JOB")" \
		stored_at_least "$JOB" 3
	# The cut: the worker's end of the link goes down; the process runs on.
	if ! ip -n "$NS" link set "$VNS" down; then
		ERRS+=("ip -n $NS link set $VNS down failed")
	fi
	CUT_MS=$(now_ms)
	# Lost after 3 missed heartbeats (6 s) and the master's next sweep: at most 25 s.
	for ((i = 0; i < 250; i++)); do
		st=$(host_states "$JOB")
		[[ " $st" == *=ok* ]] && ok_seen=$st
		lost=$(count_state "$JOB" lost)
		[[ $lost == "${#SH_HOSTS[@]}" ]] && break
		sleep 0.1
	done
	echo "# all ${#SH_HOSTS[@]} hosts lost $(($(now_ms) - CUT_MS)) ms after the cut"
	check "not all sh hosts lost within 25 s of the cut: $(host_states "$JOB")" \
		[ "$lost" = "${#SH_HOSTS[@]}" ]
	check "a host was ok while its worker was cut off: $ok_seen" [ -z "$ok_seen" ]
	for h in "${SH_HOSTS[@]}"; do
		reason=$(q "SELECT reason FROM job_hosts WHERE job_id = $JOB AND host = '$h'")
		check "$h: reason '$reason' does not name sh-1 and its missed heartbeats" \
			grep -q "lost: worker 'sh-1' missed 3 heartbeats" <<<"$reason"
	done
	# omctl job show: the hosts lost, with their reason
	oc a2 job show "$JOB"
	rc_note a2
	check "job show: exit $RC" [ "$RC" -eq 0 ]
	for h in "${SH_HOSTS[@]}"; do
		check "job show: no '$h lost ... missed 3 heartbeats' line" \
			out_re a2 "^$h +lost .*worker 'sh-1' missed 3 heartbeats"
	done
	check "workers list: sh-1 is '$(worker_state sh-1)', not gone from 'connected'" \
		[ "$(worker_state sh-1)" != connected ]
	# omctl run ends with the job (every host lost): exit 1, each host reported lost
	for ((i = 0; i < 100; i++)); do
		[[ -f $T/a.rc ]] && break
		sleep 0.1
	done
	check "omctl run had not ended 10 s after its hosts were lost" [ -f "$T/a.rc" ]
	check "omctl run: exit $(rc_of a), want 1 (hosts lost)" [ "$(rc_of a)" = 1 ]
	for h in "${SH_HOSTS[@]}"; do
		check "omctl run did not report $h lost" grep -qE "^$h: lost \(.*sh-1" "$T/a.out"
		check "omctl run printed the lines of $h out of order or twice (or none)" \
			lines_prefix a "$h" "$NLINES"
	done
	echo "# omctl run printed $(for h in "${SH_HOSTS[@]}"; do printf '%s ' "$h=$(printed a "$h")"; done)lines before the hosts were lost"
	finish "a. $NSW cut off by its netns link mid-job: its hosts become lost (missed 3 heartbeats), never ok; omctl run prints each line once" a a2
	# the background omctl has ended or will within its own timeout
	if [[ -f $T/a.rc ]]; then wait "$bg" 2>/dev/null; fi
}

# --- b. meanwhile the master serves the other IDC ----------------------------------------------
case_other_idc() {
	begin
	oc b run -t 'idc:bj' -m shell -a 'echo served'
	rc_note b
	check "exit $RC, want 0" [ "$RC" -eq 0 ]
	check "omctl printed $(grep -c ' | served$' "$T/b.out") 'served' lines, want 4" \
		[ "$(grep -c ' | served$' "$T/b.out")" = 4 ]
	check "the link came back during this case (it took too long)" \
		[ "$(ip -n "$NS" -br link show "$VNS" | awk '{print $2}')" = DOWN ]
	finish "b. during the partition the master runs a job on IDC bj" b
}

# --- c. the link comes back: sh-1 reconnects, its late results replace lost --------------------
case_restore() {
	local i h n0 n1 conn='' bad
	begin
	# Cut for at least 8 s (4 heartbeats), whatever case b took.
	while (($(now_ms) - CUT_MS < 8000)); do sleep 0.1; done
	check "hosts not all still lost just before the link came back: $(host_states "$JOB")" \
		[ "$(count_state "$JOB" lost)" = "${#SH_HOSTS[@]}" ]
	n0=$(grep -c "worker 'sh-1' (IDC 'sh') connected from" "$DIR/master.log")
	ip -n "$NS" link set "$VNS" up || ERRS+=("ip -n $NS link set $VNS up failed")
	ns_route || ERRS+=("ip -n $NS route replace $HOST_NET failed")
	RESTORED_MS=$(now_ms)
	echo "# link down for $((RESTORED_MS - CUT_MS)) ms"
	# Until sh-1 is back and every host ok.  The worker's TCP connections
	# (to the master, and its SSH sessions) sat through the cut: their next
	# retransmission comes after an exponential backoff (0.2 s doubling: up to
	# some 13 s after 8-10 s down) and the worker's redial up to 5 s, so this
	# waits up to 60 s, though recovery normally takes a few seconds.
	for ((i = 0; i < 600; i++)); do
		[[ -z $conn && $(worker_state sh-1) == connected ]] && conn=$(($(now_ms) - RESTORED_MS))
		[[ -n $conn ]] && all_ok "$JOB" && break
		sleep 0.1
	done
	echo "# after the link came back: $NSW connected after ${conn:-?} ms, all hosts ok after $(($(now_ms) - RESTORED_MS)) ms"
	check "$NSW not connected again within 60 s of the restore (workers list: '$(worker_state sh-1)')" \
		[ -n "$conn" ]
	n1=$(grep -c "worker 'sh-1' (IDC 'sh') connected from" "$DIR/master.log")
	check "the master did not log a new connection of sh-1 (before $n0, after $n1)" [ "$n1" -gt "$n0" ]
	check "hosts not all ok within 60 s of the restore (late results did not replace lost): $(host_states "$JOB")" \
		all_ok "$JOB"
	for h in "${SH_HOSTS[@]}"; do
		check "stored output of $h is not exactly 1..$NLINES ($(stored_lines "$JOB" "$h"))" \
			stored_exact "$JOB" "$h" "$NLINES"
	done
	bad=$(q "SELECT string_agg(host || ': ' || reason, '; ') FROM job_hosts
	         WHERE job_id = $JOB AND state = 'ok' AND reason LIKE 'lost%'")
	check "hosts ok that kept their lost reason: $bad" [ -z "$bad" ]
	# what omctl shows afterwards: the hosts ok, the whole output of each
	oc c2 job show "$JOB"
	rc_note c2
	for h in "${SH_HOSTS[@]}"; do
		check "job show: $h is not ok" out_re c2 "^$h +ok "
	done
	oc c3 job output "$JOB" --host web-4
	rc_note c3
	check "omctl job output --host web-4: exit $RC" [ "$RC" -eq 0 ]
	check "omctl job output --host web-4 is not exactly 1..$NLINES" \
		[ "$(md5sum <"$T/c3.out" | cut -d' ' -f1)" = "$(seq 1 "$NLINES" | md5sum | cut -d' ' -f1)" ]
	invariants
	DIAG_FILES=("$DIR/worker-$NSW.log")
	finish "c. link restored: $NSW reconnects, its late results replace lost (hosts ok), every line stored exactly once" c2 c3
	DIAG_FILES=()
}

# --- d. the reconnected worker takes new work ---------------------------------------------------
case_again() {
	begin
	oc d run -t 'idc:sh' -m shell -a 'echo again' --timeout 30
	rc_note d
	check "exit $RC, want 0" [ "$RC" -eq 0 ]
	check "omctl printed $(grep -c ' | again$' "$T/d.out") 'again' lines, want 4" \
		[ "$(grep -c ' | again$' "$T/d.out")" = 4 ]
	invariants
	finish "d. after the partition $NSW runs a new job on its hosts" d
}

# --- e. a task that ends while its worker is cut off: the result waits for the link -------------
case_end_cut_off() {
	local prev job i h lost=0 conn='' t_up bg
	begin
	prev=$(latest_job)
	# shellcheck disable=SC2016 # expanded by the remote shell
	run_bg e -t 'idc:sh' -m shell -a 'for i in $(seq 1 10); do echo $i; sleep 0.2; done; exit 0' \
		--timeout 60
	bg=$BGPID
	if ! job=$(wait_new_job "$prev"); then
		ERRS+=("no job was created")
		job=0
	fi
	for ((i = 0; i < 150; i++)); do
		stored_at_least "$job" 1 && break
		sleep 0.1
	done
	ip -n "$NS" link set "$VNS" down || ERRS+=("ip -n $NS link set $VNS down failed")
	CUT_MS=$(now_ms)
	for ((i = 0; i < 250; i++)); do
		lost=$(count_state "$job" lost)
		[[ $lost == "${#SH_HOSTS[@]}" ]] && break
		sleep 0.1
	done
	check "not all sh hosts lost within 25 s of the cut: $(host_states "$job")" \
		[ "$lost" = "${#SH_HOSTS[@]}" ]
	# The commands ended 2 s after they started, long before: their exit and
	# last lines wait on the worker (and in sshd's unacknowledged TCP data).
	while (($(now_ms) - CUT_MS < 8000)); do sleep 0.1; done
	check "hosts not all still lost just before the link came back: $(host_states "$job")" \
		[ "$(count_state "$job" lost)" = "${#SH_HOSTS[@]}" ]
	ip -n "$NS" link set "$VNS" up || ERRS+=("ip -n $NS link set $VNS up failed")
	ns_route || ERRS+=("ip -n $NS route replace $HOST_NET failed")
	t_up=$(now_ms)
	# Bounded at 60 s for the TCP retransmission backoff (see case c).
	for ((i = 0; i < 600; i++)); do
		[[ -z $conn && $(worker_state sh-1) == connected ]] && conn=$(($(now_ms) - t_up))
		[[ -n $conn ]] && all_ok "$job" && break
		sleep 0.1
	done
	echo "# link down for $((t_up - CUT_MS)) ms; then $NSW connected after ${conn:-?} ms, all hosts ok after $(($(now_ms) - t_up)) ms"
	check "$NSW not connected again within 60 s of the restore" [ -n "$conn" ]
	check "hosts not all ok within 60 s of the restore: $(host_states "$job")" all_ok "$job"
	for h in "${SH_HOSTS[@]}"; do
		check "stored output of $h is not exactly 1..10 ($(stored_lines "$job" "$h"))" \
			stored_exact "$job" "$h" 10
		check "omctl run printed the lines of $h out of order or twice (or none)" \
			lines_prefix e "$h" 10
	done
	for ((i = 0; i < 100; i++)); do
		[[ -f $T/e.rc ]] && break
		sleep 0.1
	done
	check "omctl run: exit $(rc_of e), want 1 (hosts lost)" [ "$(rc_of e)" = 1 ]
	if [[ -f $T/e.rc ]]; then wait "$bg" 2>/dev/null; fi
	invariants
	DIAG_FILES=("$DIR/worker-$NSW.log")
	finish "e. commands that end while $NSW is cut off: lost, then their results and last lines arrive once the link is back" e
	DIAG_FILES=()
}

case_cut
case_other_idc
case_restore
case_again
case_end_cut_off

echo "# $NPASS passed, $NFAIL failed"
((NFAIL == 0))
