#!/usr/bin/env bash
# shellcheck disable=SC2317 # helpers are called indirectly, through check
# End-to-end test of the walking skeleton: real PostgreSQL, one sshd standing
# in for 8 hosts on loopback, om-master, workers bj-1 bj-2 (idc bj) and sh-1
# (idc sh), driven through omctl.  Prints "ok - NAME" / "not ok - NAME" with
# "# " diagnostics; exits 1 if any case failed.  Needs root.
#
#   OM_IT_BASEPORT   first of the 4 ports (default 26400)
#   OM_IT_KEEP=1     keep the platform directory after a failure
set -uo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source=tests/fixture/lib.sh
. "$HERE/../fixture/lib.sh"

IT_NAME=omserver-it
# shellcheck source=tests/fixture/itlib.sh
. "$HERE/../fixture/itlib.sh"

# --- start -------------------------------------------------------------------------------
if ! om_platform_start "$DIR" "$BASE" 2>"$T/start.err"; then
	echo "not ok - platform start"
	sed '/^#/!s/^/# /' "$T/start.err"
	exit 1
fi
echo "ok - platform start (pg $BASE, sshd $SSHPORT, master $WPORT/$CPORT, 3 workers connected, inventory imported)"
NPASS=$((NPASS + 1))
# shellcheck disable=SC1091
. "$DIR/env"

# --- a. all hosts --------------------------------------------------------------------------
case_all() {
	local h job n
	begin
	oc a run -t all -m shell -a 'echo out-marker; echo err-marker >&2'
	rc_note a
	check "exit code $RC, want 0" [ "$RC" -eq 0 ]
	check "first line is not 'job N: 8 hosts'" first_line_re a '^job [0-9]+: 8 hosts$'
	for h in "${HOSTS[@]}"; do
		check "no '$h | out-marker' line" out_line a "$h | out-marker"
		check "no '$h ! err-marker' line" out_line a "$h ! err-marker"
		check "no '$h: ok (exit 0, ..., changed)' line" out_re a "^$h: ok \\(exit 0, [0-9.]+ s, changed\\)$"
	done
	check "no line 'summary: 8 ok, 0 failed, 0 unreachable, 0 timeout'" \
		out_line a "summary: 8 ok, 0 failed, 0 unreachable, 0 timeout"
	job=$(job_id a)
	if [[ -z $job ]]; then
		ERRS+=("no job id in the first line")
	else
		n=$(q "SELECT count(DISTINCT host) FROM job_events WHERE job_id = $job AND kind = 1
			AND position(convert_to('out-marker', 'UTF8') IN data) > 0")
		check "job_events of job $job: out-marker output from '$n' hosts, want 8" [ "$n" = 8 ]
		n=$(q "SELECT count(*) FROM job_hosts WHERE job_id = $job AND state = 'ok'")
		check "job_hosts of job $job: '$n' rows in state ok, want 8" [ "$n" = 8 ]
		n=$(q "SELECT state FROM jobs WHERE id = $job")
		check "jobs row $job: state '$n', want done" [ "$n" = "done" ]
	fi
	finish "a. run on all 8 hosts: output lines, summary, job_events/job_hosts/jobs rows" a
}

# --- b. selectors ----------------------------------------------------------------------------
case_selector() {
	local names
	begin
	oc b1 hosts list -t 'idc:bj,!db-1'
	rc_note b1
	check "hosts list: exit code $RC, want 0" [ "$RC" -eq 0 ]
	names=$(awk 'NF && $1 != "NAME" && $1 !~ /^#/ { print $1 }' "$T/b1.out" | sort | tr '\n' ' ' | sed 's/ $//')
	check "hosts list -t 'idc:bj,!db-1' gave '$names', want 'web-1 web-2 web-3'" [ "$names" = "web-1 web-2 web-3" ]

	oc b2 run -t 'web-*' -m shell -a 'echo sel-marker'
	rc_note b2
	check "run -t 'web-*': exit code $RC, want 0" [ "$RC" -eq 0 ]
	check "run -t 'web-*': first line is not 'job N: 5 hosts'" first_line_re b2 '^job [0-9]+: 5 hosts$'
	names=$(state_hosts b2)
	check "run -t 'web-*' reported hosts '$names', want 'web-1 ... web-5'" \
		[ "$names" = "$(sorted web-1 web-2 web-3 web-4 web-5)" ]
	finish "b. selectors: hosts list -t 'idc:bj,!db-1', run -t 'web-*'" b1 b2
}

# --- c. host key mismatch ------------------------------------------------------------------
case_hostkey() {
	local f fake before after off log ports p h
	begin
	rm -f "$T/fake_hostkey" "$T/fake_hostkey.pub"
	ssh-keygen -q -t ed25519 -N '' -C fake -f "$T/fake_hostkey"
	fake=$(cut -d' ' -f1,2 "$T/fake_hostkey.pub")
	for f in "$DIR/worker-bj-1.known_hosts" "$DIR/worker-bj-2.known_hosts"; do
		cp -p "$f" "$f.orig"
		awk -v a="[127.0.0.12]:$SSHPORT" -v b="[web-2]:$SSHPORT" -v k="$fake" \
			'$1 == a || $1 == b { print $1, k; next } { print }' "$f.orig" >"$f"
	done
	log=$DIR/ssh/sshd.log
	before=$(grep -c 'Accepted publickey' "$log")
	off=$(stat -c %s "$log")

	oc c run -t idc:bj -m shell -a 'echo c-marker'
	rc_note c
	check "exit code $RC, want 1" [ "$RC" -eq 1 ]
	check "no line 'web-2: failed (...): <reason with \"host key\">'" \
		out_re c '^web-2: failed( \(.*\))?: .*[Hh]ost key'
	for h in web-1 web-3 db-1; do
		check "no '$h: ok (...)' line" out_re c "^$h: ok \\("
	done

	# sshd's VERBOSE log: "Connection from A port P on 127.0.0.12 port N" and
	# "Accepted publickey for U from A port P ...": web-2's connections must
	# never get as far as authentication.
	tail -c +$((off + 1)) "$log" >"$T/c.sshd.log"
	grep -E '^(Connection from|Accepted publickey|Connection closed|Disconnected from)' "$T/c.sshd.log" >"$T/c.sshd.short"
	after=$(grep -c 'Accepted publickey' "$log")
	mapfile -t ports < <(sed -nE "s/^Connection from [0-9.]+ port ([0-9]+) on 127\\.0\\.0\\.12 port $SSHPORT .*/\\1/p" "$T/c.sshd.log")
	check "sshd saw no connection to web-2 (127.0.0.12), so no host key was checked" [ "${#ports[@]}" -gt 0 ]
	for p in "${ports[@]}"; do
		check "web-2's connection from port $p authenticated despite the wrong host key" \
			not_authenticated "$p" "$T/c.sshd.log"
	done
	check "'Accepted publickey' count went up by $((after - before)), want at most 3 (web-1, web-3, db-1)" \
		[ $((after - before)) -le 3 ]

	for f in "$DIR/worker-bj-1.known_hosts" "$DIR/worker-bj-2.known_hosts"; do
		mv -f "$f.orig" "$f"
	done
	DIAG_FILES=("$T/c.sshd.short")
	finish "c. wrong known_hosts key for web-2: web-2 failed before authenticating, others ok" c
	DIAG_FILES=()
}

# --- d. non-zero exit -------------------------------------------------------------------------
case_exit3() {
	begin
	oc d run -t web-1 -m shell -a 'exit 3'
	rc_note d
	check "exit code $RC, want 1" [ "$RC" -eq 1 ]
	check "no 'web-1: failed (exit 3, ...' line" out_re d '^web-1: failed \(exit 3, '
	check "no 'summary: 0 ok, 1 failed, ...' line" out_re d '^summary: 0 ok, 1 failed(,|$)'
	finish "d. a command exiting 3 makes the host failed (exit 3) and omctl exit 1" d
}

# --- e. closed port -------------------------------------------------------------------------------
case_closed() {
	begin
	oc e1 hosts add closed-1 --addr 127.0.0.11 --port 1 --idc bj --user omdemo
	rc_note e1
	check "hosts add closed-1: exit code $RC, want 0" [ "$RC" -eq 0 ]
	oc e2 run -t closed-1 -m shell -a true
	rc_note e2
	check "exit code $RC, want 1" [ "$RC" -eq 1 ]
	check "no 'closed-1: unreachable ...' line" out_re e2 '^closed-1: unreachable( |$)'
	finish "e. a host whose port is closed is unreachable" e1 e2
}

# --- f. timeout ----------------------------------------------------------------------------------
case_timeout() {
	begin
	oc f run -t web-1 -m shell -a 'sleep 30' --timeout 2
	rc_note f
	check "exit code $RC, want 1" [ "$RC" -eq 1 ]
	check "no 'web-1: timeout ...' line" out_re f '^web-1: timeout( |$)'
	check "took $MS ms, want under 20 s" [ "$MS" -lt 20000 ]
	finish "f. --timeout 2 on 'sleep 30' gives timeout within 20 s" f
}

# --- g. no worker in the IDC ------------------------------------------------------------------
case_noworker() {
	begin
	oc g1 hosts add lonely-1 --addr 127.0.0.11 --port "$SSHPORT" --idc gz --user omdemo
	rc_note g1
	check "hosts add lonely-1: exit code $RC, want 0" [ "$RC" -eq 0 ]
	oc g2 run -t lonely-1 -m shell -a true
	rc_note g2
	check "exit code $RC, want 1" [ "$RC" -eq 1 ]
	check "took $MS ms, want under 20 s" [ "$MS" -lt 20000 ]
	check "no 'lonely-1: unreachable ...: no live worker in IDC 'gz' for 3 s' line" \
		out_re g2 "^lonely-1: unreachable.*no live worker in IDC 'gz' for 3 s"
	finish "g. a host in an IDC without workers waits 3 s (--pending-timeout), then is unreachable" g1 g2
}

# --- h. wrong token -------------------------------------------------------------------------------
case_token() {
	local before after n
	begin
	before=$(q "SELECT count(*) FROM jobs")
	OM_TOKEN=wrong oc h run -t all -m shell -a true
	rc_note h
	after=$(q "SELECT count(*) FROM jobs")
	check "exit code $RC, want 2" [ "$RC" -eq 2 ]
	n=$(grep -c '' "$T/h.err")
	check "stderr has $n lines, want one line with a message" [ "$n" -eq 1 ]
	check "stderr line is empty" grep -q '[^[:space:]]' "$T/h.err"
	check "jobs rows went from '$before' to '$after'" [ "$before" = "$after" ]
	finish "h. a wrong token is refused (exit 2, one line on stderr) and creates no job" h
}

# --- i. garbage on both master ports -------------------------------------------------------------
# The SP handshake header nng peers exchange (0x00 'S' 'P' 0x00, protocol,
# reserved) followed by a message length of 1 GiB and junk, or just junk.
# shellcheck disable=SC2016 # expanded by the inner bash
garbage() {
	local port=$1 proto
	for _ in 1 2 3 4; do
		timeout 5 bash -c 'head -c 65536 /dev/urandom >"/dev/tcp/127.0.0.1/$0"' "$port" 2>/dev/null
	done
	for proto in '\x30' '\x31' '\x10' '\xff'; do
		timeout 5 bash -c 'exec 3<>"/dev/tcp/127.0.0.1/$0" || exit 0
			printf "\x00SP\x00\x00$1\x00\x00\x00\x00\x00\x00\x40\x00\x00\x00" >&3
			head -c 65536 /dev/urandom >&3' "$port" "$proto" 2>/dev/null
	done
	return 0
}

case_garbage() {
	local p pids=() rc n i w f rawpeer
	begin
	# a peer that sends a few bytes and then just sits there for 2 s
	for p in "$WPORT" "$CPORT"; do
		# shellcheck disable=SC2016
		timeout 5 bash -c 'exec 3<>"/dev/tcp/127.0.0.1/$0" || exit 0; printf "\x00SP" >&3; sleep 2' \
			"$p" 2>/dev/null &
		pids+=($!)
	done
	for p in "$WPORT" "$CPORT"; do garbage "$p"; done
	rawpeer=""
	for f in "$OM_BIN/om-rawpeer" "$OM_TOP/build/tests/om-rawpeer"; do
		if [[ -x $f ]]; then
			rawpeer=$f
			break
		fi
	done
	if [[ -n $rawpeer ]]; then
		for p in "$WPORT" "$CPORT"; do
			rc=0
			timeout 120 "$rawpeer" "tcp://127.0.0.1:$p" 500 >"$T/i.rawpeer.$p" 2>&1 || rc=$?
			check "om-rawpeer against port $p: exit code $rc, want 0 ($(tail -n 1 "$T/i.rawpeer.$p"))" [ "$rc" -eq 0 ]
		done
	else
		echo "# om-rawpeer not built: raw bytes only"
	fi
	wait "${pids[@]}" 2>/dev/null
	check "om-master is no longer running" alive "$DIR/master.pid"
	for w in "${OM_DEMO_WORKERS[@]}"; do
		check "worker ${w%%:*} is no longer running" alive "$DIR/worker-${w%%:*}.pid"
	done
	for ((i = 0; i < 50; i++)); do
		n=$(om_workers_connected "$DIR")
		((n == 3)) && break
		sleep 0.2
	done
	check "workers list shows $n connected, want 3" [ "$n" -eq 3 ]
	oc i run -t "$DEMO_SEL" -m shell -a 'echo after-garbage'
	rc_note i
	check "run on the 8 hosts afterwards: exit code $RC, want 0" [ "$RC" -eq 0 ]
	check "no line 'summary: 8 ok, 0 failed, 0 unreachable, 0 timeout'" \
		out_line i "summary: 8 ok, 0 failed, 0 unreachable, 0 timeout"
	finish "i. garbage on both master ports: master and workers survive, 8 hosts ok" i
}

# --- j. --json ----------------------------------------------------------------------------------
case_json() {
	local n bad
	begin
	oc j --json run -t web-1 -m shell -a 'echo hi'
	rc_note j
	check "exit code $RC, want 0" [ "$RC" -eq 0 ]
	n=$(grep -c '[^[:space:]]' "$T/j.out")
	check "no output" [ "$n" -gt 0 ]
	if command -v python3 >/dev/null 2>&1; then
		bad=$(python3 -c '
import json, sys
for i, line in enumerate(open(sys.argv[1], encoding="utf-8", errors="replace"), 1):
    if line.strip():
        try:
            json.loads(line)
        except ValueError as e:
            print("line %d: %s" % (i, e))' "$T/j.out" 2>&1)
	else
		bad=$(grep -n '[^[:space:]]' "$T/j.out" | grep -vE '^[0-9]+:[[:space:]]*\{.*\}[[:space:]]*$')
	fi
	check "lines that are not JSON: ${bad//$'\n'/; }" [ -z "$bad" ]
	finish "j. --json: every line is a JSON value" j
}

# --- k. a worker killed mid-task and restarted at once: its task is lost, not hung ---------
case_restart() {
	local pid t0 dt
	begin
	t0=$(now_ms)
	timeout 90 "$OMCTL" run -t idc:sh -m shell -a 'sleep 20' --timeout 40 >"$T/k.out" 2>&1 &
	local runpid=$!
	sleep 1.5
	pid=$(om__pidfile_ours "$DIR/worker-sh-1.pid" "$DIR") && kill -9 "$pid"
	om_worker_start "$DIR" sh-1 sh
	wait "$runpid"
	RC=$?
	dt=$(($(now_ms) - t0))
	echo "omctl run -t idc:sh -m shell -a 'sleep 20' --timeout 40 (sh-1 killed and restarted)" >"$T/k.cmd"
	rc_note k
	check "exit code $RC, want 1" [ "$RC" -eq 1 ]
	# Without the heartbeat check it would hang until --wait (160 s); with it,
	# two heartbeats (about 11-17 s) after delivery.
	check "took ${dt} ms: the lost task was not noticed within 40 s" [ "$dt" -lt 40000 ]
	check "hosts not reported lost with a reason" grep -q "lost (.*does not hold task" "$T/k.out"
	check "sh-1 did not come back" wait_for_connected sh-1
	finish "k. a worker killed mid-task and restarted: its hosts become lost (with a reason) within ~2 heartbeats" k
}
wait_for_connected() {
	local i
	for ((i = 0; i < 50; i++)); do
		"$OMCTL" workers list 2>/dev/null | grep -qE "^$1 +[a-z]+ +connected " && return 0
		sleep 0.2
	done
	return 1
}

case_all
case_selector
case_hostkey
case_exit3
case_closed
case_timeout
case_noworker
case_token
case_garbage
case_json
case_restart

echo "# $NPASS passed, $NFAIL failed"
if ((NFAIL)); then exit 1; fi
exit 0
