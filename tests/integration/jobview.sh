#!/usr/bin/env bash
# shellcheck disable=SC2317 # helpers are called indirectly, through check
# End-to-end tests of the job history (issue 5): omctl job show, jobs list
# and job output against real PostgreSQL, one sshd standing in for 8 hosts,
# om-master and workers bj-1 bj-2 sh-1.  Output must come back byte for byte;
# an operator scoped to an IDC sees only that IDC's hosts.
# Prints "ok - NAME" / "not ok - NAME"; exits 1 if any case failed.  Needs root.
#
#   OM_IT_BASEPORT   first of the 4 ports (default 26520)
#   OM_IT_KEEP=1     keep the platform directory after a failure
set -uo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source=tests/fixture/lib.sh
. "$HERE/../fixture/lib.sh"

IT_NAME=omserver-itj
OM_IT_BASEPORT=${OM_IT_BASEPORT:-26520}
# shellcheck source=tests/fixture/itlib.sh
. "$HERE/../fixture/itlib.sh"

if ! om_platform_start "$DIR" "$BASE" 2>"$T/start.err"; then
	echo "not ok - platform start"
	sed '/^#/!s/^/# /' "$T/start.err"
	exit 1
fi
echo "ok - platform start (pg $BASE, sshd $SSHPORT, master $WPORT/$CPORT, 3 workers connected)"
NPASS=$((NPASS + 1))
# shellcheck disable=SC1091
. "$DIR/env"

not() { ! "$@"; }
# NAME: the host lines of a `job show` output (after the header), first word and state
host_lines() { sed -n '/^HOST /,$p' "$T/$1.out" | tail -n +2 | awk '{print $1, $2}' | tr '\n' ' ' | sed 's/ $//'; }
# NAME PYTHON-EXPR: the expression is true of the JSON document j in NAME's output
json_ok() {
	python3 -c 'import json, sys; j = json.load(open(sys.argv[1])); sys.exit(0 if eval(sys.argv[2]) else 1)' \
		"$T/$1.out" "$2" 2>/dev/null
}
# NAME PYTHON-EXPR: the same for every line of a JSON-lines output (rows: the list)
jsonl_ok() {
	python3 -c 'import json, sys; rows = [json.loads(l) for l in open(sys.argv[1])]; sys.exit(0 if eval(sys.argv[2]) else 1)' \
		"$T/$1.out" "$2" 2>/dev/null
}

# web-1 and web-4 print and succeed, web-2 (127.0.0.12: the address sshd saw) fails with 3,
# lonely-j (IDC gz: no worker) ends unreachable.  Each prints bytes no text tool would keep.
# shellcheck disable=SC2016 # expanded by the remote shell
CMD='printf "out-x\n"; printf "a\000b\377\rc"; printf "err line\n" >&2; case "$SSH_CONNECTION" in *" 127.0.0.12 "*) exit 3;; esac'
printf 'out-x\na\000b\377\rc' >"$T/expected.out"
printf 'err line\n' >"$T/expected.err"
JOB='' JOB2=

# --- a. a job to look at ---------------------------------------------------------------------
case_setup() {
	begin
	oc a0 hosts add lonely-j --addr 127.0.0.11 --port "$SSHPORT" --idc gz --user omdemo
	rc_note a0
	check "hosts add lonely-j: exit $RC" [ "$RC" -eq 0 ]
	oc a1 run -t web-1,web-2,web-4,lonely-j -m shell -a "$CMD"
	rc_note a1
	check "run: exit $RC, want 1 (web-2 fails)" [ "$RC" -eq 1 ]
	JOB=$(job_id a1)
	check "run printed no job id" [ -n "$JOB" ]
	check "run: web-2 did not fail with exit 3" out_re a1 '^web-2: failed \(exit 3'
	finish "a. a job over web-1 web-2 web-4 lonely-j: ok, failed, unreachable" a0 a1
}

# --- b. job output -----------------------------------------------------------------------------
case_output() {
	begin
	"$OMCTL" job output "$JOB" --host web-1 >"$T/b1.out" 2>"$T/b1.err" </dev/null
	RC=$?
	echo "omctl job output $JOB --host web-1" >"$T/b1.cmd"
	rc_note b1
	check "job output --host web-1: exit $RC" [ "$RC" -eq 0 ]
	check "job output --host web-1: stdout differs from what the host printed" cmp -s "$T/expected.out" "$T/b1.out"
	check "job output --host web-1: stderr differs from what the host printed" cmp -s "$T/expected.err" "$T/b1.err"
	oc b2 job output "$JOB"
	rc_note b2
	check "job output: exit $RC" [ "$RC" -eq 0 ]
	check "job output: no 'web-1 | out-x'" out_line b2 "web-1 | out-x"
	check "job output: no 'web-2 | out-x'" out_line b2 "web-2 | out-x"
	check "job output: no 'web-4 | out-x'" out_line b2 "web-4 | out-x"
	check "job output: no 'web-1 ! err line'" out_line b2 "web-1 ! err line"
	check "job output: the unfinished last line of web-1 is missing" \
		grep -qa "^web-1 | a.b" "$T/b2.out"
	check "job output: lonely-j printed something" not grep -q "^lonely-j " "$T/b2.out"
	check "job output: not 9 lines" [ "$(wc -l <"$T/b2.out")" -eq 9 ]
	oc b3 --json job output "$JOB" --host web-4
	rc_note b3
	check "job output --json: exit $RC" [ "$RC" -eq 0 ]
	check "job output --json: no stdout line 'out-x' of web-4" \
		jsonl_ok b3 'any(r["host"] == "web-4" and r["stream"] == "stdout" and r.get("line") == "out-x" for r in rows)'
	check "job output --json: the binary line is not in line_hex" \
		jsonl_ok b3 'any(r.get("line_hex") == "610062ff0d63" for r in rows)'
	oc b4 job output "$JOB" --host web-3
	rc_note b4
	check "job output --host web-3 (not in the job): exit $RC, want 2" [ "$RC" -eq 2 ]
	check "job output --host web-3: the error does not name the host" grep -q "no host 'web-3'" "$T/b4.err"
	oc b5 job output 999999
	rc_note b5
	check "job output 999999: exit $RC, want 2" [ "$RC" -eq 2 ]
	check "job output 999999: no 'no job' error" grep -q "no job 999999" "$T/b5.err"
	finish "b. job output: raw bytes for one host (stdout and stderr apart), 'host | line' for all" b1 b2 b3 b4 b5
}

# --- c. job show -------------------------------------------------------------------------------
case_show() {
	begin
	oc c1 job show "$JOB"
	rc_note c1
	check "job show: exit $RC" [ "$RC" -eq 0 ]
	check "job show: no 'state: done'" out_re c1 '^state: +done$'
	check "job show: no 'module: shell'" out_re c1 '^module: +shell$'
	check "job show: no 'user: admin'" out_re c1 '^user: +admin$'
	check "job show: counts are not 'ok 2 failed 1 unreachable 1'" \
		out_re c1 '^hosts: +ok 2 failed 1 unreachable 1$'
	check "job show: duration missing" out_re c1 '^duration: +[0-9]+\.[0-9]{2} s$'
	check "job show: no params line" out_re c1 '^params: +cmd=.*out-x'
	check "job show: no options line" \
		out_re c1 '^options: +timeout=0 forks=0 batch=0 max_fail=- check=no become=no become_user=- retry_lost=no$'
	check "job show: hosts not by state then name: $(host_lines c1)" \
		[ "$(host_lines c1)" = "web-1 ok web-4 ok web-2 failed lonely-j unreachable" ]
	check "job show: web-2's line lacks exit 3 or its worker" out_re c1 '^web-2 +failed +3 +[0-9.]+ s +bj-[12] '
	check "job show: lonely-j's line lacks a reason" out_re c1 '^lonely-j +unreachable +- +.*[a-z]{4,}'
	oc c2 job show "$JOB" --state failed
	rc_note c2
	check "job show --state failed: exit $RC" [ "$RC" -eq 0 ]
	check "job show --state failed: $(host_lines c2)" [ "$(host_lines c2)" = "web-2 failed" ]
	oc c3 --json job show "$JOB"
	rc_note c3
	check "job show --json: exit $RC" [ "$RC" -eq 0 ]
	check "job show --json: fields" json_ok c3 \
		'j["id"] == '"$JOB"' and j["state"] == "done" and j["module"] == "shell" and j["user"] == "admin" and j["duration_ms"] >= 0 and j["finished"]'
	check "job show --json: params or options" json_ok c3 \
		'"out-x" in j["params"]["cmd"] and j["options"]["batch"] == 0 and j["options"]["max_fail"] is None'
	check "job show --json: counts" json_ok c3 \
		'j["counts"] == {"ok": 2, "failed": 1, "unreachable": 1} and list(j["counts"]) == ["ok", "failed", "unreachable"]'
	check "job show --json: hosts" json_ok c3 \
		'[h["name"] for h in j["hosts"]] == ["web-1", "web-4", "web-2", "lonely-j"] and j["hosts"][2]["exit"] == 3 and j["hosts"][3]["exit"] is None and j["hosts"][3]["reason"]'
	oc c4 job show 999999
	rc_note c4
	check "job show 999999: exit $RC, want 2" [ "$RC" -eq 2 ]
	check "job show 999999: no 'no job' error" grep -q "no job 999999" "$T/c4.err"
	oc c5 job show "$JOB" --state nosuch
	rc_note c5
	check "job show --state nosuch: exit $RC, want 2" [ "$RC" -eq 2 ]
	finish "c. job show: the job, its non-zero counts in state order, hosts by state then name" c1 c2 c3 c4 c5
}

# --- d. jobs list ------------------------------------------------------------------------------
case_list() {
	begin
	oc d0 run -t web-3 -m shell -a true
	rc_note d0
	check "second run: exit $RC" [ "$RC" -eq 0 ]
	JOB2=$(job_id d0)
	oc d1 jobs list
	rc_note d1
	check "jobs list: exit $RC" [ "$RC" -eq 0 ]
	check "jobs list: job $JOB missing or its counts wrong" \
		out_re d1 "^$JOB +[0-9T:-]+Z +admin +shell +4 +done +ok 2 failed 1 unreachable 1$"
	check "jobs list: not newest first" \
		[ "$(sed -n 2p "$T/d1.out" | awk '{print $1}')" = "$JOB2" ]
	oc d2 jobs list --limit 1 --user admin --since 1h --state "done"
	rc_note d2
	check "jobs list --limit 1: exit $RC" [ "$RC" -eq 0 ]
	check "jobs list --limit 1: not exactly one job" [ "$(wc -l <"$T/d2.out")" -eq 2 ]
	oc d3 jobs list --state running
	rc_note d3
	check "jobs list --state running lists job $JOB" not out_re d3 "^$JOB "
	oc d4 jobs list --user nobody
	rc_note d4
	check "jobs list --user nobody lists jobs" [ "$(wc -l <"$T/d4.out")" -eq 1 ]
	oc d5 --json jobs list
	rc_note d5
	check "jobs list --json" jsonl_ok d5 \
		'any(r["id"] == '"$JOB"' and r["hosts"] == 4 and r["counts"] == {"ok": 2, "failed": 1, "unreachable": 1} for r in rows)'
	oc d6 jobs list --limit 1001
	rc_note d6
	check "jobs list --limit 1001: exit $RC, want 2" [ "$RC" -eq 2 ]
	oc d7 jobs list --since 5x
	rc_note d7
	check "jobs list --since 5x: exit $RC, want 2" [ "$RC" -eq 2 ]
	finish "d. jobs list: newest first, counts summary, --state --user --since --limit" d0 d1 d2 d3 d5
}

# --- e. an operator scoped to IDC sh -----------------------------------------------------------
case_scope() {
	local tok
	begin
	echo "operator-pass-1" >"$T/op.pw"
	oc e0 users add opsh --role operator --idc sh --password-file "$T/op.pw"
	rc_note e0
	check "users add opsh: exit $RC" [ "$RC" -eq 0 ]
	tok=$("$OMCTL" tokens create --name jv --user opsh --scope read --ttl 1h 2>/dev/null)
	check "no token for opsh" [ -n "$tok" ]
	OM_TOKEN=$tok oc e1 job show "$JOB"
	rc_note e1
	check "opsh: job show: exit $RC" [ "$RC" -eq 0 ]
	check "opsh: job show lists $(host_lines e1)" [ "$(host_lines e1)" = "web-4 ok" ]
	check "opsh: job show counts hosts outside IDC sh" out_re e1 '^hosts: +ok 1$'
	OM_TOKEN=$tok oc e2 job output "$JOB"
	rc_note e2
	check "opsh: job output: exit $RC" [ "$RC" -eq 0 ]
	check "opsh: job output shows other hosts" not grep -qE '^(web-1|web-2|lonely-j) ' "$T/e2.out"
	check "opsh: job output lacks web-4" out_line e2 "web-4 | out-x"
	OM_TOKEN=$tok oc e3 job output "$JOB" --host web-1
	rc_note e3
	check "opsh: job output --host web-1: exit $RC, want 2" [ "$RC" -eq 2 ]
	check "opsh: web-1 is not 'no host'" grep -q "no host 'web-1'" "$T/e3.err"
	OM_TOKEN=$tok oc e4 job show "$JOB2"
	rc_note e4
	check "opsh: job show of a bj-only job: exit $RC, want 2" [ "$RC" -eq 2 ]
	check "opsh: a bj-only job is not 'no job'" grep -q "no job $JOB2" "$T/e4.err"
	OM_TOKEN=$tok oc e5 jobs list
	rc_note e5
	check "opsh: jobs list shows the bj-only job" not out_re e5 "^$JOB2 "
	check "opsh: jobs list lacks job $JOB (1 host, ok 1)" out_re e5 "^$JOB +.* +1 +done +ok 1$"
	# following a job (what omctl run and the console's live view use) is scoped too
	OM_TOKEN=$tok oc e6 job follow "$JOB"
	rc_note e6
	check "opsh: job follow: exit $RC, want 0" [ "$RC" -eq 0 ]
	check "opsh: job follow shows other hosts" not grep -qE '^(web-1|web-2|lonely-j)[ :]' "$T/e6.out"
	check "opsh: job follow lacks web-4's output" out_line e6 "web-4 | out-x"
	check "opsh: job follow lacks web-4's result" grep -q '^web-4: ok' "$T/e6.out"
	OM_TOKEN=$tok oc e7 job follow "$JOB2"
	rc_note e7
	check "opsh: job follow of a bj-only job: exit $RC, want 2" [ "$RC" -eq 2 ]
	check "opsh: following a bj-only job is not 'no job'" grep -q "no job $JOB2" "$T/e7.err"
	oc e8 job follow "$JOB"
	rc_note e8
	check "admin: job follow lacks web-1's output" out_line e8 "web-1 | out-x"
	finish "e. an operator scoped to IDC sh sees only sh hosts; a job of none of them is not found" e1 e2 e3 e4 e5 e6 e7 e8
}

# --- f. paging: more hosts than one JOB_HOSTS reply, more chunks than one JOB_OUTPUT reply ----
case_paging() {
	local i job chunks
	begin
	{
		echo "[many]"
		for ((i = 0; i < 1001; i++)); do printf 'many-%04d ansible_host=127.0.0.11\n' "$i"; done
	} >"$T/many.ini"
	oc f0 hosts import "$T/many.ini" --idc zz
	rc_note f0
	check "hosts import: exit $RC" [ "$RC" -eq 0 ]
	oc f1 run -t 'many-*' -m shell -a true
	rc_note f1
	job=$(job_id f1)
	check "run over 1001 hosts of an IDC without a worker: no job id" [ -n "$job" ]
	oc f2 job show "$job" --state unreachable
	rc_note f2
	check "job show of 1001 hosts: exit $RC" [ "$RC" -eq 0 ]
	sed -n '/^HOST /,$p' "$T/f2.out" | tail -n +2 | awk '{print $1}' >"$T/f2.names"
	LC_ALL=C sort -c "$T/f2.names" 2>/dev/null || ERRS+=("job show: 1001 hosts not in name order")
	check "job show: $(wc -l <"$T/f2.names") host lines, want 1001" [ "$(wc -l <"$T/f2.names")" -eq 1001 ]
	check "job show: a host listed twice" [ "$(sort -u "$T/f2.names" | wc -l)" -eq 1001 ]
	oc f3 --json job show "$job"
	rc_note f3
	check "job show --json of 1001 hosts" json_ok f3 \
		'len(j["hosts"]) == 1001 and j["counts"] == {"unreachable": 1001}'
	# shellcheck disable=SC2016 # expanded by the remote shell
	oc f4 run -t web-1 -m shell -a 'i=0; while [ $i -lt 300 ]; do echo "line $i"; i=$((i+1)); sleep 0.01; done'
	rc_note f4
	job=$(job_id f4)
	check "run of 300 lines: exit $RC" [ "$RC" -eq 0 ]
	for ((i = 0; i < 300; i++)); do echo "line $i"; done >"$T/lines.expected"
	"$OMCTL" job output "$job" --host web-1 >"$T/f5.out" 2>"$T/f5.err" </dev/null
	RC=$?
	echo "omctl job output $job --host web-1" >"$T/f5.cmd"
	rc_note f5
	check "job output of 300 lines: exit $RC" [ "$RC" -eq 0 ]
	check "job output of 300 lines differs" cmp -s "$T/lines.expected" "$T/f5.out"
	chunks=$(q "SELECT count(*) FROM job_events WHERE job_id = $job AND kind = 1")
	echo "# job $job stored its output in $chunks chunks"
	finish "f. 1001 hosts in one state and a 300-line output come back whole, in order, across pages" f1 f2 f3 f4 f5
}

case_setup
case_output
case_show
case_list
case_scope
case_paging

echo "# $NPASS passed, $NFAIL failed"
if ((NFAIL)); then exit 1; fi
exit 0
