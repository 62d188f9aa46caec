#!/usr/bin/env bash
# shellcheck disable=SC2317 # helpers are called indirectly, through check
# Trust and access, attacked through the real platform (issue 3): worker key
# acceptance, enrollment tokens, IDC binding and a rogue worker, roles and
# target scope, token expiry and revocation, password login, the RPC
# permission sweep (nothing changes in the database), the audit chain with a
# tampered row, and secrets that must never leak.  Needs root.
set -uo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source=tests/fixture/lib.sh
. "$HERE/../fixture/lib.sh"
export OM_IT_BASEPORT=${OM_IT_BASEPORT_TRUST:-26410}
IT_NAME=omserver-trust
# shellcheck source=tests/fixture/itlib.sh
. "$HERE/../fixture/itlib.sh"

PROBE=$OM_TOP/build/tests/om-probe
SECRETS=() # every secret seen: must never leak (case j)

if ! om_platform_start "$DIR" "$BASE" 2>"$T/start.err"; then
	echo "not ok - platform start"
	sed '/^#/!s/^/# /' "$T/start.err"
	exit 1
fi
echo "ok - platform start"
NPASS=$((NPASS + 1))
# shellcheck disable=SC1091
. "$DIR/env"
ADMIN_TOKEN=$OM_TOKEN
PUB=$(cat "$DIR/master.pub")
SECRETS+=("$ADMIN_TOKEN" "$(cat "$DIR/admin.password")")
for w in "${OM_DEMO_WORKERS[@]}"; do SECRETS+=("$(cat "$DIR/worker-${w%%:*}.enroll")"); done

# --- helpers -------------------------------------------------------------------------------
# key_field NAME COLUMN: a column (1 ID, 4 STATE, 5 FINGERPRINT) of the newest key of worker NAME
key_field() {
	"$OMCTL" keys list 2>/dev/null | awk -v n="$1" -v c="$2" '$2 == n { v = $c } END { print v }'
}
wait_for() { # SECONDS COMMAND...: polls every 0.2 s
	local i n=$(($1 * 5))
	shift
	for ((i = 0; i < n; i++)); do
		"$@" && return 0
		sleep 0.2
	done
	return 1
}
connected() { "$OMCTL" workers list 2>/dev/null | awk -v n="$1" '$1 == n && $3 == "connected" { f = 1 } END { exit !f }'; }
not_connected() { ! connected "$1"; }
key_state_is() { [ "$(key_field "$1" 4)" = "$2" ]; }
no_accepted_key() { ! "$OMCTL" keys list 2>/dev/null | awk -v n="$1" '$2 == n && $4 == "accepted"' | grep -q .; }
sh_task_of_last_job() { [ -n "$(q "SELECT id FROM tasks WHERE idc='sh' AND job_id=(SELECT max(id) FROM jobs)")" ]; }
audit_has() { # ACTION OUTCOME [DETAIL-ERE]
	"$OMCTL" --json audit list --limit 1000 >"$T/audit.json" 2>/dev/null &&
		python3 - "$1" "$2" "${3:-}" "$T/audit.json" <<'EOF'
import json, re, sys
action, outcome, pat, path = sys.argv[1:5]
for line in open(path):
    r = json.loads(line)
    if r["action"] == action and r["outcome"] == outcome and (not pat or re.search(pat, (r["detail"] or "") + " " + (r["target"] or ""))):
        sys.exit(0)
sys.exit(1)
EOF
}
stop_worker() { # NAME
	local pid
	pid=$(om__pidfile_ours "$DIR/worker-$1.pid" "$DIR") && om__terminate 5 "$DIR" "$pid"
	rm -f "$DIR/worker-$1.pid"
}
jobs_count() { q "SELECT count(*) FROM jobs"; }
# The state of the database except the audit trail and last-seen times.
db_fingerprint() {
	q "SELECT md5(string_agg(x, '|' ORDER BY x)) FROM (
	     SELECT 'h' || h::text AS x FROM hosts h
	     UNION ALL SELECT 'j' || j::text FROM jobs j
	     UNION ALL SELECT 'jh' || jh::text FROM job_hosts jh
	     UNION ALL SELECT 'e' || e::text FROM job_events e
	     UNION ALL SELECT 't' || t::text FROM tasks t
	     UNION ALL SELECT 'k' || concat_ws(',', id, name, idc, fingerprint, state) FROM worker_keys
	       WHERE state <> 'pending' -- first contact of an unknown key is recorded, by design
	     UNION ALL SELECT 'u' || concat_ws(',', id, name, role, password_hash, disabled) FROM users
	     UNION ALL SELECT 'a' || concat_ws(',', id, user_id, name, encode(hash, 'hex'), revoked_at) FROM api_tokens
	     UNION ALL SELECT 'n' || concat_ws(',', id, idc, used_at) FROM enroll_tokens
	   ) s"
}
new_token() { # NAME USER SCOPES [TTL]: prints the secret
	local tok
	tok=$("$OMCTL" tokens create --name "$1" --user "$2" --scope "$3" --ttl "${4:-1d}" 2>/dev/null) || return 1
	SECRETS+=("$tok")
	echo "$tok"
}

# --- a. a new key is pending and receives nothing until accepted ----------------------------
case_pending() {
	local id fp
	begin
	: >"$DIR/worker-bj-9.enroll"
	om_worker_start "$DIR" bj-9 bj
	check "no pending key for bj-9 after 10 s" wait_for 10 key_state_is bj-9 pending
	check "bj-9 shows as connected while pending" not_connected bj-9
	id=$(key_field bj-9 1)
	fp=$(key_field bj-9 5)
	oc a1 keys accept "$id" --fingerprint 0000000000000000000000000000000000000000000000000000000000000000
	rc_note a1
	check "accept with a wrong fingerprint: exit $RC, want 2" [ "$RC" -eq 2 ]
	check "accept with a wrong fingerprint did not say why" grep -q fingerprint "$T/a1.err"
	check "key changed state after a refused accept" key_state_is bj-9 pending
	oc a2 keys accept "$id" --fingerprint "$fp"
	rc_note a2
	check "accept: exit $RC, want 0" [ "$RC" -eq 0 ]
	check "bj-9 did not connect within 15 s of its acceptance" wait_for 15 connected bj-9
	check "no audit row for key.accept" audit_has key.accept ok "$fp"
	check "no audit row for the refused accept" audit_has key.accept refused
	finish "a. a new worker key is pending (receives nothing), a wrong fingerprint is refused, accept admits it" a1 a2
}

# --- b. revoking cuts a connected worker off ------------------------------------------------
case_revoke() {
	local id
	begin
	id=$(key_field bj-9 1)
	oc b1 keys revoke "$id"
	rc_note b1
	check "revoke: exit $RC, want 0" [ "$RC" -eq 0 ]
	check "bj-9 still connected 5 s after its key was revoked" wait_for 5 not_connected bj-9
	check "bj-9 came back after revocation" sh -c "sleep 6; ! $OMCTL workers list | grep -q '^bj-9 .* connected '"
	check "key state is not revoked" key_state_is bj-9 revoked
	check "no audit row for key.revoke" audit_has key.revoke ok
	check "the worker was not told its key is revoked" wait_for 10 grep -q "revoked" "$DIR/worker-bj-9.log"
	stop_worker bj-9
	finish "b. revoking a key cuts the connected worker off, and it stays out" b1
}

# --- c. enrollment tokens work once and only for their IDC ----------------------------------
case_enroll() {
	local tok tok2
	begin
	tok=$(om_enroll_token "$DIR" bj) && SECRETS+=("$tok")
	echo "$tok" >"$DIR/worker-bj-7.enroll"
	om_worker_start "$DIR" bj-7 bj
	check "bj-7 did not connect with a fresh token" wait_for 15 connected bj-7
	check "bj-7's key is not accepted" key_state_is bj-7 accepted
	cp "$DIR/worker-bj-7.enroll" "$DIR/worker-bj-6.enroll"
	om_worker_start "$DIR" bj-6 bj
	sleep 3
	check "a second worker got in with a used token" not_connected bj-6
	check "bj-6 has an accepted key after reusing a token" no_accepted_key bj-6
	check "no refusal audited for the reused token" audit_has worker.hello refused "enrollment token is not valid"
	tok2=$(om_enroll_token "$DIR" bj) && SECRETS+=("$tok2")
	echo "$tok2" >"$DIR/worker-sh-7.enroll"
	om_worker_start "$DIR" sh-7 sh
	sleep 3
	check "a bj token admitted a worker claiming IDC sh" not_connected sh-7
	stop_worker bj-7
	stop_worker bj-6
	stop_worker sh-7
	finish "c. an enrollment token admits one worker of its IDC once"
}

# --- d. a rogue worker: valid key for bj claiming sh, or reporting an sh task ----------------
case_rogue() {
	local task job before tok
	begin
	# A rogue of its own (a real bj worker, enrolled with a bj token), so it does
	# not fight a running worker for its session.
	"$PROBE" - - keygen "$T/probe.key"
	tok=$(om_enroll_token "$DIR" bj) && SECRETS+=("$tok")
	"$PROBE" "tcp://127.0.0.1:$WPORT" "$PUB" hello "$T/probe.key" probe-w bj "$tok" >"$T/d0.out" 2>&1
	check "the rogue could not enroll for bj: $(cat "$T/d0.out")" grep -qx welcome "$T/d0.out"
	"$PROBE" "tcp://127.0.0.1:$WPORT" "$PUB" hello "$T/probe.key" probe-w sh >"$T/d1.out" 2>&1
	check "bj-1's key claiming IDC sh was not refused: $(cat "$T/d1.out")" grep -q "^refused: .*accepted for IDC 'bj'" "$T/d1.out"
	check "no audit row for the IDC claim" audit_has worker.hello refused "claims IDC 'sh'"
	check "no audit row for the rogue's enrollment" audit_has key.enroll ok "accepted for IDC 'bj'"
	# An sh task in flight, and bj-1 reporting it done.
	timeout 60 "$OMCTL" run -t idc:sh -m shell -a 'sleep 4; echo done' >"$T/d2.out" 2>&1 &
	local runpid=$!
	check "no sh task dispatched within 5 s" wait_for 5 sh_task_of_last_job
	task=$(q "SELECT id FROM tasks WHERE idc='sh' ORDER BY id DESC LIMIT 1")
	job=$(q "SELECT job_id FROM tasks WHERE id=$task")
	"$PROBE" "tcp://127.0.0.1:$WPORT" "$PUB" report "$T/probe.key" probe-w bj "$task" >"$T/d3.out" 2>&1
	check "a report for an sh task from a bj worker was not refused: $(cat "$T/d3.out")" grep -q "^error: task $task is not assigned" "$T/d3.out"
	before=$(q "SELECT count(*) FROM job_hosts WHERE job_id=$job AND state='ok'")
	check "the rogue report changed host states ($before ok)" [ "$before" = 0 ]
	check "no audit row for the rogue report" audit_has report refused "task $task of job $job belongs to worker 'sh-1'"
	wait "$runpid"
	check "the sh job did not finish normally after the rogue report" grep -q "^summary: 4 ok, 0 failed" "$T/d2.out"
	DIAG_FILES=("$T/d1.out" "$T/d2.out" "$T/d3.out")
	finish "d. rogue worker (accepted for bj): claiming IDC sh refused, reporting an sh task refused, both audited"
	DIAG_FILES=()
}

# --- e. roles, target scope and module scope ------------------------------------------------
case_roles() {
	local v o1 o2 n0
	begin
	printf 'viewer-pass-1\n' >"$T/pw1"
	oc e0 users add viewer1 --role viewer --password-file "$T/pw1"
	check "users add viewer1: exit $RC" [ "$RC" -eq 0 ]
	"$OMCTL" users add op1 --role operator --idc bj --password-file "$T/pw1" >/dev/null 2>&1
	"$OMCTL" users add op2 --role operator --module ping --password-file "$T/pw1" >/dev/null 2>&1
	v=$(new_token v viewer1 read) || ERRS+=("cannot create a viewer token")
	o1=$(new_token o1 op1 read,run) || ERRS+=("cannot create an operator token")
	o2=$(new_token o2 op2 read,run) || ERRS+=("cannot create a token for op2")
	n0=$(jobs_count)
	OM_TOKEN=$v oc e1 run -t all -m shell -a true
	rc_note e1
	check "viewer run: exit $RC, want 2" [ "$RC" -eq 2 ]
	check "viewer run: no 'permission denied'" grep -q "permission denied" "$T/e1.err"
	OM_TOKEN=$v oc e2 hosts list
	check "viewer hosts list: exit $RC, want 0" [ "$RC" -eq 0 ]
	OM_TOKEN=$o1 oc e3 run -t all -m shell -a true
	rc_note e3
	check "operator(bj) run on all: exit $RC, want 2" [ "$RC" -eq 2 ]
	check "operator(bj) run on all: no scope reason" grep -q "outside the scope" "$T/e3.err"
	check "refused runs created jobs" [ "$(jobs_count)" = "$n0" ]
	OM_TOKEN=$o1 oc e4 run -t idc:bj -m shell -a true
	rc_note e4
	check "operator(bj) run on idc:bj: exit $RC, want 0" [ "$RC" -eq 0 ]
	OM_TOKEN=$o1 oc e5 hosts list
	check "operator(bj) sees hosts outside bj" sh -c "! grep -qE '^(web-4|web-5|db-2|cache-1) ' '$T/e5.out'"
	OM_TOKEN=$o2 oc e6 run -t web-1 -m shell -a true
	rc_note e6
	check "operator(module ping) ran shell: exit $RC" [ "$RC" -eq 2 ]
	check "no module reason" grep -q "module 'shell' is not allowed" "$T/e6.err"
	OM_TOKEN=$v oc e7 tokens create --name more --scope admin
	rc_note e7
	check "a viewer created an admin token: exit $RC" [ "$RC" -eq 2 ]
	check "no audit row for the refused submit" audit_has job.submit refused "outside the scope"
	finish "e. roles: viewer cannot run, a scoped operator runs only in its IDC and modules, tokens never exceed the role" e1 e3 e4 e6 e7
}

# --- f. token expiry, revocation, disabled users ------------------------------------------
case_tokens() {
	local t1 t2 id
	begin
	t1=$(new_token short viewer1 read 2s)
	OM_TOKEN=$t1 oc f1 workers list
	check "a fresh token failed: exit $RC" [ "$RC" -eq 0 ]
	sleep 2.5
	OM_TOKEN=$t1 oc f2 workers list
	check "an expired token worked: exit $RC" [ "$RC" -eq 2 ]
	t2=$(new_token revokeme viewer1 read)
	id=$("$OMCTL" tokens list | awk '$3 == "revokeme" { print $1 }')
	oc f3 tokens revoke "$id"
	check "tokens revoke: exit $RC" [ "$RC" -eq 0 ]
	OM_TOKEN=$t2 oc f4 workers list
	check "a revoked token worked: exit $RC" [ "$RC" -eq 2 ]
	t2=$(new_token before-disable viewer1 read)
	oc f5 users disable viewer1
	OM_TOKEN=$t2 oc f6 workers list
	check "the token of a disabled user worked: exit $RC" [ "$RC" -eq 2 ]
	"$OMCTL" users enable viewer1 >/dev/null 2>&1
	check "no audit row for token.revoke" audit_has token.revoke ok
	check "no refused login audited" audit_has login refused
	finish "f. tokens: expiry (now >= exp), revocation and disabled users refuse at once" f2 f4 f6
}

# --- g. password login ------------------------------------------------------------------
case_password() {
	begin
	SECRETS+=("Canary-Wrong-3c9b7a")
	(unset OM_TOKEN && oc g1 --user admin --password-file "$DIR/admin.password" workers list)
	check "admin password login failed" grep -q "^bj-1 " "$T/g1.out"
	printf 'Canary-Wrong-3c9b7a\n' >"$T/wrongpw"
	(unset OM_TOKEN && oc g2 --user admin --password-file "$T/wrongpw" workers list && echo "$RC" >"$T/g2.rc")
	check "a wrong password logged in" [ "$(cat "$T/g2.rc")" = 2 ]
	finish "g. password login works, a wrong password is refused" g1 g2
}

# --- h. RPC permission sweep: only what is permitted answers, the database does not change ----
case_sweep() {
	local before after v line code
	begin
	v=$(new_token sweep viewer1 read)
	# A worker identity of its own, so the sweep does not fight a running worker.
	# the rogue of case d is an accepted bj worker of its own
	"$PROBE" "tcp://127.0.0.1:$WPORT" "$PUB" hello "$T/probe.key" probe-w bj >"$T/h-enroll.out" 2>&1
	check "the probe worker is not accepted: $(cat "$T/h-enroll.out")" grep -qx welcome "$T/h-enroll.out"
	before=$(db_fingerprint)
	"$PROBE" "tcp://127.0.0.1:$CPORT" "$PUB" sweep-anon >"$T/h-anon-c.out" 2>&1
	"$PROBE" "tcp://127.0.0.1:$WPORT" "$PUB" sweep-anon ik >"$T/h-anon-w.out" 2>&1
	check "anonymous sweep: $(grep -c answered "$T/h-anon-c.out" "$T/h-anon-w.out" | tr '\n' ' ') answered" \
		sh -c "! grep -q answered '$T/h-anon-c.out' '$T/h-anon-w.out'"
	check "anonymous sweep did not cover 256 codes" [ "$(wc -l <"$T/h-anon-c.out")" = 256 ]
	"$PROBE" "tcp://127.0.0.1:$CPORT" "$PUB" sweep-client "$v" >"$T/h-viewer.out" 2>&1
	# a viewer: reads answer; FOLLOW, JOB_SHOW, JOB_HOSTS and JOB_OUTPUT of a missing job are
	# allowed (not found); the rest is refused
	while read -r code line; do
		case $code in
		26 | 30 | 58 | 65 | 70) [[ $line == answered* ]] || ERRS+=("viewer: code $code not answered ($line)") ;;
		24 | 68 | 69 | 71) [[ $line == "error -11"* ]] || ERRS+=("viewer: code $code of a missing job: $line") ;;
		66) [[ $line == "error -11"* ]] || ERRS+=("viewer: MODULE_SHOW of a missing module: $line") ;;
		*) [[ $line == answered* ]] && ERRS+=("viewer: code $code answered ($line)") ;;
		esac
	done <"$T/h-viewer.out"
	check "viewer sweep did not cover 256 codes" [ "$(wc -l <"$T/h-viewer.out")" = 256 ]
	"$PROBE" "tcp://127.0.0.1:$WPORT" "$PUB" sweep-worker "$T/probe.key" probe-w bj >"$T/h-worker.out" 2>&1
	while read -r code line; do
		case $code in
		3 | 4 | 7 | 10) [[ $line == answered* ]] || ERRS+=("worker: code $code not answered ($line)") ;;
		*) [[ $line == answered* ]] && ERRS+=("worker: code $code answered ($line)") ;;
		esac
	done <"$T/h-worker.out"
	after=$(db_fingerprint)
	check "the database changed during the sweeps ($before -> $after)" [ "$before" = "$after" ]
	check "no refused operation audited for the viewer" audit_has hosts.add refused "needs scope 'admin'"
	DIAG_FILES=("$T/h-viewer.out" "$T/h-worker.out")
	finish "h. permission sweep of codes 0..255: anonymous, as a worker, as a viewer"
	DIAG_FILES=()
}

# --- i. the audit chain: append-only, verified, tampering found --------------------------------
case_audit() {
	begin
	oc i1 audit verify
	check "audit verify on an intact chain: exit $RC ($(cat "$T/i1.out"))" [ "$RC" -eq 0 ]
	for a in login job.submit key.accept key.revoke user.add token.create token.revoke; do
		check "no '$a' row in the audit log" audit_has "$a" ok
	done
	check "the master's role could UPDATE the audit table" sh -c "! psql -X -q -h '$DIR/pg' -p '$BASE' -U om_master -d omserver -c \"UPDATE audit SET detail='x' WHERE id=3\" 2>/dev/null"
	check "the master's role could DELETE from the audit table" sh -c "! psql -X -q -h '$DIR/pg' -p '$BASE' -U om_master -d omserver -c 'DELETE FROM audit WHERE id=3' 2>/dev/null"
	q "SET session_replication_role = replica; UPDATE audit SET detail = 'tampered' WHERE id = 3" >/dev/null
	oc i2 audit verify
	rc_note i2
	check "audit verify after tampering: exit $RC, want 1" [ "$RC" -eq 1 ]
	check "audit verify did not name row 3" grep -q "row 3" "$T/i2.err"
	finish "i. audit log: complete, append-only for the master, a row altered by a superuser is named" i1 i2
}

# --- j. secrets never leak --------------------------------------------------------------
case_secrets() {
	local s f
	begin
	pg_dump -h "$DIR/pg" -p "$BASE" -U postgres --data-only omserver >"$T/dump.sql" 2>/dev/null ||
		ERRS+=("pg_dump failed")
	for f in keys users tokens audit; do
		"$OMCTL" --json "$f" list >"$T/api-$f.json" 2>&1
	done
	"$OMCTL" --json workers list >"$T/api-workers.json" 2>&1
	for s in "${SECRETS[@]}"; do
		[ -n "$s" ] || continue
		for f in "$DIR"/master.log "$DIR"/worker-*.log "$T/dump.sql" "$T"/api-*.json; do
			grep -qF -- "$s" "$f" && ERRS+=("secret ${s:0:8}... found in ${f##*/}")
		done
	done
	check "fewer than 8 secrets were checked (${#SECRETS[@]})" [ "${#SECRETS[@]}" -ge 8 ]
	finish "j. tokens, passwords and enrollment tokens never appear in logs, the database or API answers (${#SECRETS[@]} secrets)"
}

case_pending
case_revoke
case_enroll
case_rogue
case_roles
case_tokens
case_password
case_sweep
case_audit
case_secrets

echo "# $NPASS passed, $NFAIL failed"
((NFAIL == 0))
