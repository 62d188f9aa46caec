#!/usr/bin/env bash
# shellcheck disable=SC2317 # helpers are called indirectly, through check
# End-to-end tests of the worker engine and the module system (issue 4):
# real PostgreSQL, one sshd standing in for 8 hosts, om-master, workers
# bj-1 bj-2 sh-1, driven through omctl.  Session reuse, cancel and timeouts
# that stop the remote process, rolling waves, become, host-key policies,
# and every built-in module plus a script module against the real sshd.
# Prints "ok - NAME" / "not ok - NAME"; exits 1 if any case failed.  Needs root.
#
#   OM_IT_BASEPORT   first of the 4 ports (default 26420)
#   OM_IT_KEEP=1     keep the platform directory after a failure
set -uo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source=tests/fixture/lib.sh
. "$HERE/../fixture/lib.sh"

IT_NAME=omserver-itm
OM_IT_BASEPORT=${OM_IT_BASEPORT:-26420}
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

LOG=$DIR/ssh/sshd.log
SSH_HOME=$(getent passwd "$OM_SSH_USER" | cut -d: -f6)
TAG=$$ # unique remote process names: this box is every host

wait_for_connected() {
	local i
	for ((i = 0; i < 50; i++)); do
		"$OMCTL" workers list 2>/dev/null | grep -qE "^$1 +[a-z]+ +connected " && return 0
		sleep 0.2
	done
	return 1
}
# no process whose command line contains $1, within 8 s
gone() {
	local i
	for ((i = 0; i < 40; i++)); do
		pgrep -f -- "$1" >/dev/null || return 0
		sleep 0.2
	done
	return 1
}
appears() {
	local i
	for ((i = 0; i < 50; i++)); do
		pgrep -f -- "$1" >/dev/null && return 0
		sleep 0.2
	done
	return 1
}
logins() { grep -c 'Accepted publickey' "$LOG"; }
not() { ! "$@"; }

# --- a. catalog --------------------------------------------------------------------------
case_catalog() {
	local m
	begin
	oc a1 modules list
	rc_note a1
	check "modules list: exit $RC" [ "$RC" -eq 0 ]
	for m in shell command script copy fetch ping facts service package echo-args; do
		check "modules list has no '$m'" out_re a1 "^$m +"
	done
	# the IDEMPOTENT column: what may run again after its worker died
	for m in ping facts fetch copy; do
		check "modules list: '$m' not idempotent" out_re a1 "^$m +[^ ]+ +c +yes "
	done
	for m in shell command script service package; do
		check "modules list: '$m' idempotent" out_re a1 "^$m +[^ ]+ +c +no "
	done
	oc a2 module show copy
	rc_note a2
	check "module show copy: exit $RC" [ "$RC" -eq 0 ]
	check "module show copy: not idempotent" out_re a2 "^idempotent: yes"
	for m in dest mode content owner; do
		check "module show copy has no parameter '$m'" grep -qw -- "$m" "$T/a2.out"
	done
	oc a3 run -t web-1 -m copy -a 'content=x dest=relative/path'
	rc_note a3
	check "relative dest: exit $RC, want 2" [ "$RC" -eq 2 ]
	check "relative dest: the error does not name 'dest'" grep -q "parameter 'dest'" "$T/a3.err"
	oc a4 run -t web-1 -m copy -a 'content=x dest=/tmp/x mode=9z'
	rc_note a4
	check "bad mode: exit $RC, want 2" [ "$RC" -eq 2 ]
	check "bad mode: the error does not name 'mode'" grep -q "parameter 'mode'" "$T/a4.err"
	oc a5 run -t web-1 -m ping -e nosuch=1
	rc_note a5
	check "unknown parameter: exit $RC, want 2" [ "$RC" -eq 2 ]
	check "unknown parameter: the error does not name it" grep -q "nosuch" "$T/a5.err"
	# job show says whether and why hosts of a dead worker run again
	oc a6 run -t web-1 -m ping
	oc a7 job show "$(job_id a6)"
	check "job show of a ping job: no 'retry lost: yes (module is idempotent)'" \
		out_re a7 '^retry lost: yes \(module is idempotent\)$'
	oc a8 run -t web-1 -m shell -a true --retry-lost
	oc a9 job show "$(job_id a8)"
	check "job show of a --retry-lost job: no 'retry lost: yes (--retry-lost)'" \
		out_re a9 '^retry lost: yes \(--retry-lost\)$'
	oc a10 run -t web-1 -m shell -a true
	oc a11 job show "$(job_id a10)"
	check "job show of a shell job: no 'retry lost: no'" out_re a11 '^retry lost: no$'
	finish "a. modules list / module show (with idempotence), parameters checked against the schema before dispatch, job show says why lost hosts run again" a1 a2 a3 a4 a5 a6 a7 a8 a9 a10 a11
}

# --- b. session pool ---------------------------------------------------------------------
case_pool() {
	local before after
	begin
	oc b1 run -t "$DEMO_SEL" -m ping
	rc_note b1
	check "first run: exit $RC" [ "$RC" -eq 0 ]
	sleep 0.3
	before=$(logins)
	oc b2 run -t "$DEMO_SEL" -m shell -a 'echo second'
	rc_note b2
	check "second run: exit $RC" [ "$RC" -eq 0 ]
	check "second run: web-1 printed nothing" out_line b2 "web-1 | second"
	sleep 0.3
	after=$(logins)
	check "second job to the same hosts logged in $((after - before)) times, want 0 (sessions reused)" \
		[ "$after" -eq "$before" ]
	finish "b. a second job to the same hosts reuses the pooled sessions: no new login in the sshd log" b1 b2
}

# --- c. cancel ---------------------------------------------------------------------------
case_cancel() {
	local job i runpid
	begin
	timeout 60 "$OMCTL" run -t web-1 -m shell -a "sleep 347$TAG; echo never" >"$T/c1.out" 2>"$T/c1.err" &
	runpid=$!
	echo "omctl run -t web-1 -m shell -a 'sleep 347$TAG; echo never' (cancelled)" >"$T/c1.cmd"
	check "the remote sleep never started" appears "sleep 347$TAG"
	job=$(job_id c1)
	for ((i = 0; i < 20; i++)); do
		[[ -n $job ]] && break
		sleep 0.1
		job=$(job_id c1)
	done
	oc c2 job cancel "$job"
	rc_note c2
	check "job cancel $job: exit $RC" [ "$RC" -eq 0 ]
	wait "$runpid"
	RC=$?
	rc_note c1
	check "the cancelled run exited $RC, want 1" [ "$RC" -eq 1 ]
	check "no 'web-1: cancelled' line" out_re c1 '^web-1: cancelled'
	check "the remote 'sleep 347$TAG' still runs after the cancel" gone "sleep 347$TAG"
	check "'never' was printed" not grep -q never "$T/c1.out"
	finish "c. omctl job cancel stops the remote process and the host ends cancelled" c1 c2
}

# --- d. timeout --------------------------------------------------------------------------
case_timeout() {
	begin
	oc d run -t web-2 -m shell --timeout 2 -a "sleep 348$TAG; echo never"
	rc_note d
	check "exit $RC, want 1" [ "$RC" -eq 1 ]
	check "no 'web-2: timeout' line" out_re d '^web-2: timeout'
	check "the remote 'sleep 348$TAG' still runs after the timeout" gone "sleep 348$TAG"
	finish "d. a timeout stops the remote process" d
}

# --- e. waves ----------------------------------------------------------------------------
case_waves() {
	local nfail nskip nok
	begin
	oc e1 run -t idc:bj -m shell --batch 1 --max-fail 0 -a 'exit 1'
	rc_note e1
	check "exit $RC, want 1" [ "$RC" -eq 1 ]
	nfail=$(grep -cE '^[a-z0-9-]+: failed' "$T/e1.out")
	nskip=$(grep -cE '^[a-z0-9-]+: skipped.*max-fail' "$T/e1.out")
	check "$nfail hosts failed, want 1 (the first wave)" [ "$nfail" -eq 1 ]
	check "$nskip hosts skipped with a max-fail reason, want 3" [ "$nskip" -eq 3 ]
	oc e2 run -t idc:bj -m shell --batch 50% -a 'echo wave'
	rc_note e2
	check "batch 50%: exit $RC" [ "$RC" -eq 0 ]
	nok=$(grep -cE '^[a-z0-9-]+: ok' "$T/e2.out")
	check "batch 50%: $nok hosts ok, want 4" [ "$nok" -eq 4 ]
	finish "e. --batch runs waves; --max-fail stops later waves, which end skipped with a reason" e1 e2
}

# --- f. become ---------------------------------------------------------------------------
case_become() {
	begin
	oc f1 run -t web-3 -m shell -a 'id -u'
	rc_note f1
	check "without become: exit $RC" [ "$RC" -eq 0 ]
	check "without become the command ran as root" not out_line f1 "web-3 | 0"
	oc f2 run -t web-3 -m shell --become -a 'id -u'
	rc_note f2
	check "become: exit $RC" [ "$RC" -eq 0 ]
	check "become: no 'web-3 | 0' line" out_line f2 "web-3 | 0"
	oc f3 run -t web-3 -m shell --become --become-user nobody -a 'id -un'
	rc_note f3
	check "become nobody: exit $RC" [ "$RC" -eq 0 ]
	check "become nobody: no 'web-3 | nobody' line" out_line f3 "web-3 | nobody"
	finish "f. --become runs through sudo -n (root, or --become-user)" f1 f2 f3
}

# --- g. command, copy, fetch, script, script module, ping ----------------------------------
case_command() {
	begin
	# shellcheck disable=SC2016 # literally: no shell may expand it
	oc g run -t web-1 -m command -a 'echo $HOME "a  b" ;'
	rc_note g
	check "exit $RC" [ "$RC" -eq 0 ]
	# shellcheck disable=SC2016
	check "command went through a shell" out_line g 'web-1 | $HOME a  b ;'
	finish "g. command runs argv without a shell" g
}
case_copy() {
	local dest=/tmp/om-it-copy-$TAG
	begin
	rm -f "$dest"
	oc h1 --json run -t web-1 -m copy -a "content='hello world' dest=$dest mode=0640"
	rc_note h1
	check "first copy: exit $RC" [ "$RC" -eq 0 ]
	check "file content differs" [ "$(cat "$dest" 2>/dev/null)" = "hello world" ]
	check "file mode $(stat -c %a "$dest" 2>/dev/null), want 640" [ "$(stat -c %a "$dest" 2>/dev/null)" = 640 ]
	check "first copy not reported changed" grep -q '"changed": *true' "$T/h1.out"
	oc h2 --json run -t web-1 -m copy -a "content='hello world' dest=$dest mode=0640"
	rc_note h2
	check "second copy: exit $RC" [ "$RC" -eq 0 ]
	check "unchanged file reported changed" grep -q '"changed": *false' "$T/h2.out"
	oc h3 --json run -t web-1 -m copy --check -a "content=other dest=$dest"
	rc_note h3
	check "check mode: exit $RC" [ "$RC" -eq 0 ]
	check "check mode: a different content not reported as a change" grep -q '"changed": *true' "$T/h3.out"
	check "check mode changed the file" [ "$(cat "$dest" 2>/dev/null)" = "hello world" ]
	rm -f "$dest"
	finish "h. copy: SFTP upload verified by sha256, mode, unchanged file not changed, check mode writes nothing" h1 h2 h3
}
copy_temps() { find /tmp -maxdepth 1 -name '.omserver-copy-*' | wc -l; }
# SFTP writes as the login user: --become must still install into a root-only directory.
case_copy_become() {
	local dir=/tmp/om-it-rootonly-$TAG dest f=/tmp/om-it-copy-owner-$TAG ntmp
	dest=$dir/conf
	begin
	ntmp=$(copy_temps)
	rm -rf "$dir" "$f"
	mkdir -m 700 "$dir" && chown root:root "$dir"
	oc h4 run -t web-2 -m copy --become -a "content='secret stuff' dest=$dest owner=root mode=0600"
	rc_note h4
	check "become copy into a root-only directory: exit $RC" [ "$RC" -eq 0 ]
	check "become copy: content differs" [ "$(cat "$dest" 2>/dev/null)" = "secret stuff" ]
	check "become copy: owner/mode $(stat -c '%U %a' "$dest" 2>/dev/null), want root 600" \
		[ "$(stat -c '%U %a' "$dest" 2>/dev/null)" = "root 600" ]
	check "become copy: a staged copy was left in $dir" not compgen -G "$dir/*.omtmp.*"
	check "become copy: an upload temp file was left in /tmp" [ "$(copy_temps)" -eq "$ntmp" ]
	oc h5 run -t web-2 -m copy -a "content=other dest=$dir/other"
	rc_note h5
	check "copy without become into a root-only directory: exit $RC, want 1" [ "$RC" -eq 1 ]
	check "without become: no 'failed' line giving the cause (Permission denied)" \
		out_re h5 "^web-2: failed .*installing '$dir/other' failed .*Permission denied"
	check "without become: a file was written" [ ! -e "$dir/other" ]
	check "without become: an upload temp file was left in /tmp" [ "$(copy_temps)" -eq "$ntmp" ]
	oc h6 run -t web-2 -m copy --become -a "content=x dest=$f owner=nobody group=nogroup"
	rc_note h6
	check "owner=nobody group=nogroup: exit $RC" [ "$RC" -eq 0 ]
	check "owner/group $(stat -c %U:%G "$f" 2>/dev/null), want nobody:nogroup" \
		[ "$(stat -c %U:%G "$f" 2>/dev/null)" = nobody:nogroup ]
	oc h7 --json run -t web-2 -m copy --become -a "content=x dest=$f owner=nobody group=nogroup"
	rc_note h7
	check "same owner/group again: exit $RC" [ "$RC" -eq 0 ]
	check "same owner/group again reported changed" grep -q '"changed": *false' "$T/h7.out"
	rm -rf "$dir" "$f"
	finish "h2. copy --become: upload as the login user, install as root (root-only directory, owner, mode, group); without become it fails with the cause" h4 h5 h6 h7
}
case_fetch() {
	local src=/tmp/om-it-fetch-$TAG.txt job
	begin
	head -c 100000 /dev/urandom | base64 >"$src"
	chmod 644 "$src"
	oc i1 run -t web-2 -m fetch -a "src=$src"
	rc_note i1
	check "fetch: exit $RC" [ "$RC" -eq 0 ]
	job=$(job_id i1)
	oc i2 job fetch "$job" --dest "$T/fetched"
	rc_note i2
	check "job fetch: exit $RC" [ "$RC" -eq 0 ]
	check "the fetched file differs from the source" cmp -s "$src" "$T/fetched/web-2/om-it-fetch-$TAG.txt"
	oc i3 run -t web-2 -m fetch -a "src=$src max_size=1000"
	rc_note i3
	check "over max_size: exit $RC, want 1" [ "$RC" -eq 1 ]
	check "over max_size: no 'web-2: failed' line" out_re i3 '^web-2: failed'
	rm -f "$src"
	finish "i. fetch: the file lands in the master's artifact store, job fetch writes it, a size cap fails the host" i1 i2 i3
}
case_script() {
	begin
	printf '#!/bin/sh\necho "script-ran $1 as $(id -un)"\n' >"$T/s.sh"
	oc j run -t web-3 -m script -a "script=$T/s.sh args=x1"
	rc_note j
	check "exit $RC" [ "$RC" -eq 0 ]
	check "no 'web-3 | script-ran x1 as $OM_SSH_USER' line" out_line j "web-3 | script-ran x1 as $OM_SSH_USER"
	check "a temporary script was left in /tmp" not ls /tmp/.omserver-script-* 2>/dev/null
	finish "j. script: a local script runs on the host and is removed" j
}
case_scriptmod() {
	local n
	begin
	rm -rf "$SSH_HOME/.omserver"
	oc k1 --json run -t web-1 -m echo-args -a 'msg=hi count=3'
	rc_note k1
	check "first run: exit $RC" [ "$RC" -eq 0 ]
	check "the result does not echo the parameters" grep -q '"msg": *"hi"' "$T/k1.out"
	oc k2 --json run -t web-1 -m echo-args -a 'msg=again'
	rc_note k2
	check "second run: exit $RC" [ "$RC" -eq 0 ]
	n=$(find "$SSH_HOME/.omserver/modules" -type f 2>/dev/null | wc -l)
	check "$n files in the module cache, want 1 (uploaded once, by checksum)" [ "$n" -eq 1 ]
	finish "k. a script module (manifest + executable) runs with JSON arguments, cached by checksum" k1 k2
}
case_facts() {
	begin
	oc l1 run -t web-4 -m facts
	rc_note l1
	check "facts: exit $RC" [ "$RC" -eq 0 ]
	oc l2 hosts show web-4
	rc_note l2
	check "hosts show: exit $RC" [ "$RC" -eq 0 ]
	check "hosts show has no kernel $(uname -r)" grep -qF "$(uname -r)" "$T/l2.out"
	check "hosts show has no cpus" grep -qw cpus "$T/l2.out"
	check "hosts show has no memory" grep -q memory "$T/l2.out"
	finish "l. facts are stored on the host record and shown by hosts show" l1 l2
}
case_service_package() {
	begin
	oc m1 --json run -t web-5 -m package --check -a 'name=coreutils state=present'
	rc_note m1
	check "package present (check): exit $RC" [ "$RC" -eq 0 ]
	check "an installed package reported as a change" grep -q '"changed": *false' "$T/m1.out"
	oc m2 --json run -t web-5 -m package --check -a 'name=om-no-such-package state=absent'
	rc_note m2
	check "package absent (check): exit $RC" [ "$RC" -eq 0 ]
	oc m3 run -t web-5 -m package -a 'name=bad;name'
	rc_note m3
	check "bad package name: exit $RC, want 1 or 2" [ "$RC" -ne 0 ]
	if pidof systemd >/dev/null 2>&1 && [[ -d /run/systemd/system ]]; then
		oc m4 run -t web-5 -m service --become -a 'name=ssh state=status'
		rc_note m4
		check "service status: exit $RC" [ "$RC" -eq 0 ]
	else
		# No systemd in this container: the module must say so, not pretend.
		oc m4 run -t web-5 -m service -a 'name=ssh state=status'
		rc_note m4
		check "service without systemd: exit $RC, want 1" [ "$RC" -eq 1 ]
		check "service without systemd: no reason naming systemctl/systemd" grep -qi 'systemd\|systemctl' "$T/m4.out"
	fi
	finish "m. package (check mode, names validated) and service" m1 m2 m3 m4
}

# --- n. host-key policies ----------------------------------------------------------------
case_hostkeys() {
	local pid n
	begin
	pid=$(om__pidfile_ours "$DIR/worker-sh-1.pid" "$DIR") && kill "$pid"
	sleep 1
	cp "$DIR/worker-sh-1.known_hosts" "$T/sh-1.known_hosts.orig"
	: >"$DIR/worker-sh-1.known_hosts"
	OM_WORKER_ARGS="--host-key-policy accept-new" om_worker_start "$DIR" sh-1 sh
	check "sh-1 (accept-new) did not connect" wait_for_connected sh-1
	oc n1 run -t idc:sh -m ping
	rc_note n1
	check "accept-new: exit $RC" [ "$RC" -eq 0 ]
	n=$(grep -c . "$DIR/worker-sh-1.known_hosts")
	check "accept-new recorded $n keys, want 4" [ "$n" -eq 4 ]
	oc n2 audit list
	rc_note n2
	check "no hostkey.accept-new rows in the audit log" grep -q 'hostkey.accept-new' "$T/n2.out"

	pid=$(om__pidfile_ours "$DIR/worker-sh-1.pid" "$DIR") && kill "$pid"
	sleep 1
	: >"$DIR/worker-sh-1.known_hosts"
	om_worker_start "$DIR" sh-1 sh
	check "sh-1 (strict) did not connect" wait_for_connected sh-1
	oc n3 run -t idc:sh -m ping
	rc_note n3
	check "strict with unknown keys: exit $RC, want 1" [ "$RC" -eq 1 ]
	check "strict: no 'not in known_hosts' reason" grep -q 'not in known_hosts' "$T/n3.out"

	pid=$(om__pidfile_ours "$DIR/worker-sh-1.pid" "$DIR") && kill "$pid"
	sleep 1
	cp "$T/sh-1.known_hosts.orig" "$DIR/worker-sh-1.known_hosts"
	om_worker_start "$DIR" sh-1 sh
	check "sh-1 did not come back" wait_for_connected sh-1
	finish "n. host keys: accept-new records unknown keys (audited), strict fails them" n1 n2 n3
}

# --- o. worker stop -----------------------------------------------------------------------
case_worker_stop() {
	local pid runpid
	begin
	timeout 60 "$OMCTL" run -t web-4 -m shell -a "sleep 349$TAG; echo never" >"$T/o.out" 2>"$T/o.err" &
	runpid=$!
	echo "omctl run -t web-4 -m shell -a 'sleep 349$TAG; echo never' (sh-1 stopped)" >"$T/o.cmd"
	check "the remote sleep never started" appears "sleep 349$TAG"
	pid=$(om__pidfile_ours "$DIR/worker-sh-1.pid" "$DIR") && kill "$pid"
	wait "$runpid"
	RC=$?
	rc_note o
	check "exit $RC, want 1" [ "$RC" -eq 1 ]
	check "no 'web-4: cancelled' line (the stopping worker reports it)" out_re o '^web-4: cancelled'
	check "the remote 'sleep 349$TAG' still runs after the worker stopped" gone "sleep 349$TAG"
	om_worker_start "$DIR" sh-1 sh
	check "sh-1 did not come back" wait_for_connected sh-1
	finish "o. a worker stopped by SIGTERM kills its remote commands and reports them cancelled" o
}

case_catalog
case_pool
case_cancel
case_timeout
case_waves
case_become
case_command
case_copy
case_copy_become
case_fetch
case_script
case_scriptmod
case_facts
case_service_package
case_hostkeys
case_worker_stop

echo "# $NPASS passed, $NFAIL failed"
if ((NFAIL)); then exit 1; fi
exit 0
