#!/usr/bin/env bash
# shellcheck disable=SC2317 # helpers are called indirectly, through check
# Fault tests of durable dispatch (issue 5): real PostgreSQL, one sshd
# standing in for 8 hosts, om-master (a second one for some cases), workers
# bj-1 bj-2 sh-1 that know both master endpoints.  A master killed with -9
# at dispatch and mid-stream and restarted, a master stopped while workers
# finish (store and forward through the spool), a worker stopped past the
# liveness window (lost, then its late results), PostgreSQL restarted during
# ingest, two masters with one killed mid-job, output bytes stored exactly,
# the master killed inside a report's commit at three points.
# After every case the invariants I1-I4 (SECURITY.md) are checked on the
# database, and what omctl printed is checked for gaps and duplicates.
# Prints "ok - NAME" / "not ok - NAME"; exits 1 if any case failed.  Needs root.
#
#   OM_IT_BASEPORT   first of 6 ports (default 26460)
#   OM_IT_KEEP=1     keep the platform directory after a failure
set -uo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source=tests/fixture/lib.sh
. "$HERE/../fixture/lib.sh"

IT_NAME=omserver-itd
OM_IT_BASEPORT=${OM_IT_BASEPORT:-26460}
# Short heartbeats: a worker silent for 6 s is gone (3 heartbeats).
OM_MASTER_ARGS="--pending-timeout 3 --heartbeat-ms 2000"
# shellcheck source=tests/fixture/itlib.sh
. "$HERE/../fixture/itlib.sh"
W2PORT=$((BASE + 4)) C2PORT=$((BASE + 5))
OM_WORKER_ARGS="--master tcp://127.0.0.1:$W2PORT"

if ! om_platform_start "$DIR" "$BASE" 2>"$T/start.err"; then
	echo "not ok - platform start"
	sed '/^#/!s/^/# /' "$T/start.err"
	exit 1
fi
echo "ok - platform start (pg $BASE, sshd $SSHPORT, master $WPORT/$CPORT, 3 workers connected)"
NPASS=$((NPASS + 1))
# shellcheck disable=SC1091
. "$DIR/env"
M1="tcp://127.0.0.1:$CPORT" M2="tcp://127.0.0.1:$C2PORT"

pid_of() { om__pidfile_ours "$DIR/$1.pid" "$DIR"; }
kill9() {
	local pid
	pid=$(pid_of "$1") && kill -9 "$pid" && while kill -0 "$pid" 2>/dev/null; do sleep 0.05; done
}
connected_count() { "$OMCTL" workers list 2>/dev/null | grep -cE "^[a-z0-9-]+ +[a-z]+ +connected "; }
wait_connected() { # N workers connected within 20 s
	local i
	for ((i = 0; i < 100; i++)); do
		[[ $(connected_count) -ge $1 ]] && return 0
		sleep 0.2
	done
	return 1
}
# Waits until job JOB has a host in state running or dispatched, or any host final (10 s).
wait_job_started() {
	local i
	for ((i = 0; i < 100; i++)); do
		[[ $(q "SELECT count(*) FROM job_hosts WHERE job_id = $1 AND state <> 'queued'") -gt 0 ]] &&
			return 0
		sleep 0.1
	done
	return 1
}
# NAME HOST N: omctl printed "HOST | 1" .. "HOST | N" once each, in order
lines_exact() {
	local got want
	got=$(grep -E "^$2 \| [0-9]+$" "$T/$1.out" | sed "s/^$2 | //" | tr '\n' ' ')
	want=$(seq 1 "$3" | tr '\n' ' ')
	[[ $got == "$want" ]]
}
# JOB HOST N: the stored stdout of HOST is exactly the lines 1..N
stored_exact() {
	[[ $(q "SELECT md5(string_agg(data, ''::bytea ORDER BY seq)) FROM job_events
	        WHERE job_id = $1 AND host = '$2' AND kind = 1 AND stream = 1") == \
		$(seq 1 "$3" | md5sum | cut -d' ' -f1) ]]
}

# --- a. kill -9 the master right after dispatch, restart it ----------------------------------
case_master_dispatch() {
	local prev job
	begin
	prev=$(latest_job)
	run_bg a -t "$DEMO_SEL" -m shell -a 'sleep 2; echo done' --timeout 60
	local bg=$BGPID
	job=$(wait_new_job "$prev")
	wait_job_started "$job"
	kill9 master
	sleep 1
	om_master_start "$DIR" "$WPORT" "$CPORT" || ERRS+=("master did not restart")
	wait "$bg"
	check "omctl exit $(rc_of a), want 0" [ "$(rc_of a)" = 0 ]
	check "omctl did not say it reconnected" grep -q "connection to master lost" "$T/a.err"
	check "hosts not all ok: $(host_states "$job")" all_ok "$job"
	check "omctl did not print 'web-1 | done' exactly once" \
		[ "$(grep -cx 'web-1 | done' "$T/a.out")" = 1 ]
	check "omctl printed $(grep -cE '^[a-z0-9-]+ \| done$' "$T/a.out") 'done' lines, want 8" \
		[ "$(grep -cE '^[a-z0-9-]+ \| done$' "$T/a.out")" = 8 ]
	invariants
	finish "a. master killed with -9 after dispatch and restarted: the job completes, omctl reconnects, no line twice" a
}

# --- b. kill -9 the master mid-stream ---------------------------------------------------------
case_master_stream() {
	local prev job h
	begin
	prev=$(latest_job)
	run_bg b -t "$DEMO_SEL" -m shell -a 'for i in $(seq 1 300); do echo $i; sleep 0.01; done' \
		--timeout 60
	local bg=$BGPID
	job=$(wait_new_job "$prev")
	sleep 1.5
	kill9 master
	sleep 0.5
	om_master_start "$DIR" "$WPORT" "$CPORT" || ERRS+=("master did not restart")
	wait "$bg"
	check "omctl exit $(rc_of b), want 0" [ "$(rc_of b)" = 0 ]
	check "hosts not all ok: $(host_states "$job")" all_ok "$job"
	for h in "${HOSTS[@]}"; do
		check "omctl output of $h is not exactly 1..300" lines_exact b "$h" 300
		check "stored output of $h is not exactly 1..300" stored_exact "$job" "$h" 300
	done
	invariants
	finish "b. master killed with -9 mid-stream: every host's 300 lines printed and stored once, in order" b
}

# --- c. store and forward: the master is stopped while the workers finish ---------------------
case_store_forward() {
	local prev job pid
	begin
	prev=$(latest_job)
	run_bg c -t 'idc:bj' -m shell -a 'sleep 1; echo forwarded' --timeout 60
	local bg=$BGPID
	job=$(wait_new_job "$prev")
	wait_job_started "$job"
	pid=$(pid_of master)
	kill -STOP "$pid"
	# the commands finish while nobody can acknowledge; then bj-1 stops (SIGTERM)
	# with its results undelivered: they must go to its spool
	sleep 2.5
	pid=$(pid_of worker-bj-1) && kill -TERM "$pid"
	sleep 5
	kill -CONT "$(pid_of master)"
	om_worker_start "$DIR" bj-1 bj
	wait "$bg"
	check "hosts not all ok: $(host_states "$job")" all_ok "$job"
	check "omctl exit $(rc_of c), want 0" [ "$(rc_of c)" = 0 ]
	check "omctl printed $(grep -c ' | forwarded$' "$T/c.out") 'forwarded' lines, want 4" \
		[ "$(grep -c ' | forwarded$' "$T/c.out")" = 4 ]
	check "bj-1 did not stop with results in its spool" \
		grep -q "results (.* bytes) wait in the spool" "$DIR/worker-bj-1.log"
	check "bj-1 did not find its spooled results at start" \
		grep -q "results (.* bytes) from an earlier run" "$DIR/worker-bj-1.log"
	invariants
	DIAG_FILES=("$DIR/worker-bj-1.log")
	finish "c. master stopped while workers finish, a worker restarted: results delivered from the spool" c
	DIAG_FILES=()
}

# --- d. a worker silent past the liveness window: lost, then its late result -------------------
case_late() {
	local prev job pid i reason
	begin
	prev=$(latest_job)
	run_bg d -t 'idc:sh' -m shell -a 'sleep 1; echo late' --timeout 60
	local bg=$BGPID
	job=$(wait_new_job "$prev")
	wait_job_started "$job"
	pid=$(pid_of worker-sh-1)
	kill -STOP "$pid"
	for ((i = 0; i < 200; i++)); do
		[[ $(q "SELECT count(*) FROM job_hosts WHERE job_id = $job AND state = 'lost'") == 4 ]] && break
		sleep 0.1
	done
	reason=$(q "SELECT reason FROM job_hosts WHERE job_id = $job AND host = 'web-4'")
	check "web-4 not lost with a reason while sh-1 was stopped (state $(host_states "$job"))" \
		grep -q "lost: worker 'sh-1' missed 3 heartbeats" <<<"$reason"
	kill -CONT "$pid"
	wait "$bg"
	for ((i = 0; i < 100; i++)); do
		all_ok "$job" && break
		sleep 0.1
	done
	check "late results did not replace lost: $(host_states "$job")" all_ok "$job"
	check "omctl did not report the hosts lost: $(head -c 300 "$T/d.out")" grep -q ": lost (" "$T/d.out"
	invariants
	finish "d. a worker stopped past 3 heartbeats: its hosts become lost, its late results then count (I4)" d
}

# --- e. PostgreSQL restarted during ingest ----------------------------------------------------
case_pg_restart() {
	local prev job h
	begin
	prev=$(latest_job)
	run_bg e -t "$DEMO_SEL" -m shell -a 'for i in $(seq 1 400); do echo $i; sleep 0.01; done' \
		--timeout 60
	local bg=$BGPID
	job=$(wait_new_job "$prev")
	sleep 1
	om_pg_stop "$DIR"
	sleep 2
	om_pg_restart "$DIR" || ERRS+=("PostgreSQL did not restart")
	wait "$bg"
	check "omctl exit $(rc_of e), want 0" [ "$(rc_of e)" = 0 ]
	check "hosts not all ok: $(host_states "$job")" all_ok "$job"
	for h in "${HOSTS[@]}"; do
		check "stored output of $h is not exactly 1..400" stored_exact "$job" "$h" 400
		check "omctl output of $h is not exactly 1..400" lines_exact e "$h" 400
	done
	check "master died" alive "$DIR/master.pid"
	invariants
	finish "e. PostgreSQL restarted during ingest: the master reconnects, nothing lost or doubled" e
}

# --- f. two masters: submitted on one, run by workers of the other; one killed mid-job ---------
case_two_masters() {
	local prev job h
	begin
	om_master_start "$DIR" "$W2PORT" "$C2PORT" 2 || ERRS+=("second master did not start")
	prev=$(latest_job)
	# submitted through master 2; the workers are attached to master 1
	OM_MASTER="$M2,$M1" run_bg f -t "$DEMO_SEL" -m shell \
		-a 'for i in $(seq 1 200); do echo $i; sleep 0.01; done' --timeout 60
	local bg=$BGPID
	job=$(wait_new_job "$prev")
	sleep 1
	kill9 master
	wait "$bg"
	check "omctl exit $(rc_of f), want 0" [ "$(rc_of f)" = 0 ]
	check "hosts not all ok: $(host_states "$job")" all_ok "$job"
	for h in "${HOSTS[@]}"; do
		check "omctl output of $h is not exactly 1..200" lines_exact f "$h" 200
	done
	check "workers did not move to master 2" grep -q "reconnected to master tcp://127.0.0.1:$W2PORT" \
		"$DIR/worker-bj-1.log"
	# and a new job through master 2 alone runs everywhere
	OM_MASTER=$M2 oc f2 run -t "$DEMO_SEL" -m shell -a 'echo after'
	rc_note f2
	check "a job after the kill: exit $RC, want 0" [ "$RC" -eq 0 ]
	om_master_start "$DIR" "$WPORT" "$CPORT" || ERRS+=("master 1 did not restart")
	invariants
	finish "f. two masters: a job submitted on master 2 runs on workers of master 1, which is killed mid-job" f f2
}

# --- g. output is bytes ----------------------------------------------------------------------
case_bytes() {
	local job want got
	begin
	oc g run -t web-1 -m shell \
		-a "printf 'a\\000b\\377\\376c\\303 \\r\\rd\\n'; head -c 3000000 /dev/zero | tr '\\000' x"
	rc_note g
	job=$(job_id g)
	check "exit $RC, want 0" [ "$RC" -eq 0 ]
	want=$( (printf 'a\000b\377\376c\303 \r\rd\n'; head -c 3000000 /dev/zero | tr '\000' x) | md5sum | cut -d' ' -f1)
	got=$(q "SELECT md5(string_agg(data, ''::bytea ORDER BY seq)) FROM job_events
	         WHERE job_id = ${job:-0} AND host = 'web-1' AND kind = 1 AND stream = 1")
	check "stored bytes differ (md5 $got, want $want)" [ "$got" = "$want" ]
	if "$OMCTL" job output "${job:-0}" --host web-1 >"$T/g2.out" 2>"$T/g2.err"; then
		got=$(md5sum <"$T/g2.out" | cut -d' ' -f1)
		check "omctl job output bytes differ (md5 $got, want $want)" [ "$got" = "$want" ]
	else
		ERRS+=("omctl job output failed: $(head -c 200 "$T/g2.err")")
	fi
	invariants
	finish "g. NUL, invalid UTF-8, lone CR and a 3 MB line are stored and returned exactly" g
}

# --- h. kill -9 the master inside a report's commit --------------------------------------------
# OM_TEST_FAULT (om_fault in proto/base.c) kills the master at the 4th pass
# through a point: a batch sent without its COMMIT (rolled back), a COMMIT
# on the wire whose outcome the master never reads (committed or not), a
# committed batch not yet acknowledged (the worker sends it again).
case_mid_commit() {
	local point prev job h pid bg i
	begin
	# Only the armed master may take the reports: master 2 (case f) goes.
	if alive "$DIR/master2.pid"; then
		kill9 master2
	fi
	for point in ingest.precommit ingest.commit report.ack; do
		kill9 master
		OM_TEST_FAULT="$point:4" om_master_start "$DIR" "$WPORT" "$CPORT" ||
			ERRS+=("armed master did not start ($point)")
		wait_connected 3 || ERRS+=("workers did not reconnect to the armed master ($point)")
		prev=$(latest_job)
		run_bg "h-$point" -t "$DEMO_SEL" -m shell \
			-a 'for i in $(seq 1 200); do echo $i; sleep 0.01; done' --timeout 60
		bg=$BGPID
		job=$(wait_new_job "$prev")
		pid=$(pid_of master)
		for ((i = 0; i < 300; i++)); do
			kill -0 "$pid" 2>/dev/null || break
			sleep 0.1
		done
		check "fault $point:4 did not fire" grep -q "om_fault: $point:4 fired" "$DIR/master.log"
		om_master_start "$DIR" "$WPORT" "$CPORT" || ERRS+=("master did not restart ($point)")
		wait "$bg"
		check "$point: omctl exit $(rc_of "h-$point"), want 0" [ "$(rc_of "h-$point")" = 0 ]
		check "$point: hosts not all ok: $(host_states "$job")" all_ok "$job"
		for h in "${HOSTS[@]}"; do
			check "$point: omctl output of $h is not exactly 1..200" lines_exact "h-$point" "$h" 200
			check "$point: stored output of $h is not exactly 1..200" stored_exact "$job" "$h" 200
		done
	done
	invariants
	finish "h. master killed with -9 inside a report's commit (batch without COMMIT, COMMIT in flight, committed but not acknowledged): every line stored and printed once" h
}

# --- i. --retry-lost: a dead worker's hosts run again on the other worker of the IDC -----------
case_retry_lost() {
	local prev job w other pid i
	begin
	prev=$(latest_job)
	run_bg i -t 'idc:bj' -m shell -a 'sleep 3; echo done' --timeout 60 --retry-lost
	local bg=$BGPID
	job=$(wait_new_job "$prev")
	for ((i = 0; i < 100; i++)); do
		w=$(q "SELECT worker FROM tasks WHERE job_id = $job AND state = 'delivered' LIMIT 1")
		[[ -n $w ]] && break
		sleep 0.1
	done
	case $w in
	bj-1) other=bj-2 ;;
	bj-2) other=bj-1 ;;
	*) other="" ERRS+=("no bj worker took job $job (got '$w')") ;;
	esac
	if [[ -n $other ]]; then
		pid=$(pid_of "worker-$w")
		kill -STOP "$pid"
		wait "$bg"
		check "omctl exit $(rc_of i), want 0" [ "$(rc_of i)" = 0 ]
		check "hosts not all ok: $(host_states "$job")" all_ok "$job"
		check "hosts not all on $other, run 2: $(q "SELECT string_agg(host || '@' || coalesce(worker, '-') || '#' || attempt, ' ') FROM job_hosts WHERE job_id = $job")" \
			[ "$(q "SELECT count(*) FROM job_hosts WHERE job_id = $job AND (worker <> '$other' OR attempt <> 2)")" = 0 ]
		check "no retry record naming $w for each host" \
			[ "$(q "SELECT count(*) FROM job_host_attempts WHERE job_id = $job AND attempt = 1 AND worker = '$w' AND reason LIKE '%$w%'")" = \
			"$(q "SELECT count(*) FROM job_hosts WHERE job_id = $job")" ]
		check "omctl printed $(grep -c ' | done$' "$T/i.out") 'done' lines, want one per host" \
			[ "$(grep -c ' | done$' "$T/i.out")" = "$(q "SELECT count(*) FROM job_hosts WHERE job_id = $job")" ]
		# The first worker wakes up: its results of run 1 must not undo run 2.
		kill -CONT "$pid"
		wait_connected 3 || ERRS+=("$w did not come back")
		sleep 2
		check "a late run-1 result moved a host: $(host_states "$job")" all_ok "$job"
		check "hosts left run 2" \
			[ "$(q "SELECT count(*) FROM job_hosts WHERE job_id = $job AND attempt <> 2")" = 0 ]
	fi
	invariants
	finish "i. --retry-lost: a dead worker's hosts run again on the other worker of the IDC, recorded; its late results of the first run change nothing" i
}

# OM_IT_CASES="a f": only those cases
for c in a:case_master_dispatch b:case_master_stream c:case_store_forward d:case_late \
	e:case_pg_restart f:case_two_masters g:case_bytes h:case_mid_commit i:case_retry_lost; do
	[[ -z ${OM_IT_CASES:-} || " $OM_IT_CASES " == *" ${c%%:*} "* ]] && "${c#*:}"
done

echo "# $NPASS passed, $NFAIL failed"
((NFAIL == 0))
