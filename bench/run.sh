#!/usr/bin/env bash
# `make bench` (issue 7): omserver beside pssh, pdsh, ClusterShell and
# Ansible on one loopback sshd fleet, in one run, interleaved; then the
# platform's own dispatch latency with the noop module.
#
#   bench/run.sh [-n "10 100 500"] [-r RUNS] [-c "true uname"] [-t "TOOLS"]
#                [-f FANOUT] [-j DISPATCH_JOBS] [-o OUTDIR] [--no-install]
#
#   -n   host counts (default 10 100 500; at most 500)
#   -r   repetitions of every cell, the median is reported (default 3)
#   -c   commands: true, uname (uname -a) (default both)
#   -t   tools: omserver pssh pdsh clush ansible (default all)
#   -f   hosts at once, the same for every tool (default 100)
#   -j   noop jobs for the dispatch latency (default 200; 0 skips it)
#   -o   where latest.md and latest.json go (default bench/results)
#   --no-install   do not apt-get install missing peers (they are skipped)
#   --readme       also put the main tables into README.md (Performance)
#   --only "SECTIONS"  run only these of: fanout dispatch scale flood (default
#                  all); the rows of the other sections are kept from the previous
#                  OUTDIR/latest.raw.jsonl, so latest.{md,json} stay whole
#   --scale-n N    scale: simulated hosts, half per IDC (default 10000)
#   --scale-sim S  scale: om-worker --sim LATENCY_MS:OUTPUT_BYTES (default 5:100)
#   --flood-n N    flood: simulated hosts (default 128)
#   --flood-sim S  flood: om-worker --sim LATENCY_MS:OUTPUT_BYTES, at most 64M
#                  a host (default 5:8M: 128 x 8 MiB = 1 GiB of output)
#
# Needs root (sshd switches users) and `make` (build/bin, build/plugins,
# build/bench/om-bench-dispatch).  Everything runs on loopback:
#
# - The fleet: one sshd (tests/fixture/lib.sh, om_sshd_start) listening on
#   127.0.1.1 .. 127.0.1.16 (16 = sshd's MAX_LISTEN_SOCKS), port BASE+1.
#   Host i is h%04d.lK with K = (i-1)%16+1, as in ../shared/bench/anchors:
#   an ssh_config maps *.lK to 127.0.1.K for the OpenSSH-based tools; the
#   omserver inventory has the same names with ansible_host=127.0.1.K.
#   One inventory host is one SSH session to omserver (sessions are pooled
#   per inventory name), as N machines would be.
# - scale: two more workers, sim-a (IDC sima) and sim-b (IDC simb), run with
#   --sim (hosts simulated in the worker: no SSH; see worker/sim.h); SCALE_N
#   inventory hosts, half per IDC; one job (shell `uname -a`, forks = N)
#   from submit to every result stored in PostgreSQL (omctl run returns when
#   the master says the job is done).
# - flood: one more worker, flood-1 (IDC flood), --sim FLOOD_SIM; one job
#   (shell, forks = N) on FLOOD_N hosts (group flood) that each print 8 MiB
#   by default, 1 GiB in all, through the real path (outbox, spool, reports,
#   master, PostgreSQL, and back to the omctl that follows the job, whose
#   output goes to /dev/null).  The master's VmRSS (and the worker's) is
#   sampled every 0.25 s meanwhile: it must stay flat (bounded buffers).  The
#   other workers are stopped first.
# - omserver: PostgreSQL (BASE), one master, one worker (IDC bj) that serves
#   every bench host.  "cold": the worker was just restarted, so every host
#   needs a new SSH connection; "warm": the same job again at once, on the
#   sessions the cold run left in the worker's pool.
# - Every tool gets the same fan-out (-f), the same key, known_hosts and KEX
#   (curve25519-sha256, what libssh2 negotiates with OpenSSH 9.2; the
#   OpenSSH default, sntrup761x25519, costs the ssh client about 90 ms of
#   CPU per connection: see the anchors' RESULTS.md).
#
# Per measurement: wall time (fork of the tool to its exit), hosts that
# succeeded, and CPU:
# - controller CPU: for omserver the om-master and om-worker processes; for
#   a peer the tool's whole process tree (wait4 rusage of the tool and of
#   every descendant waited for: each ssh it starts; build/bench/
#   om-bench-rusage).  omctl's own CPU (the same way) and PostgreSQL's (the
#   postmaster and every backend) are recorded beside it, not in it.
# - sshd CPU: the fleet sshd's whole tree (listener, per-connection
#   processes, the users' shells).
# Master, worker, PostgreSQL and sshd are each in a cgroup-v1 cpuacct group
# when one can be made (exact, in ns, live processes included); otherwise
# /proc (clock ticks; a pooled session's login CPU then shows only once the
# session closes).
# Cells are interleaved: each repetition runs every tool once, the starting
# tool rotating, so background load falls on all of them alike.
#
# Ports BASE..BASE+3 (OM_BENCH_BASEPORT, default 27000).  Bounded: each tool
# run by `timeout` (the flood's job by OM_BENCH_FLOOD_TIMEOUT, default 600 s),
# the whole run by OM_BENCH_BUDGET seconds (default 1500: remaining
# repetitions, and the flood when the budget is spent before it, are skipped,
# and the report says so).
set -uo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
TOP=$(cd "$HERE/.." && pwd)
# shellcheck source=tests/fixture/lib.sh
. "$TOP/tests/fixture/lib.sh"

ARGS_GIVEN="$*"
SIZES="10 100 500"
RUNS=3
CMDS="true uname"
TOOLS="omserver pssh pdsh clush ansible"
FANOUT=100
DJOBS=200
OUT=$HERE/results
INSTALL=1
README=
ONLY=
SCALE_N=10000
SCALE_SIM=5:100
FLOOD_N=128
FLOOD_SIM=5:8M
while (($#)); do
	case $1 in
	-n) SIZES=$2; shift 2 ;;
	-r) RUNS=$2; shift 2 ;;
	-c) CMDS=$2; shift 2 ;;
	-t) TOOLS=$2; shift 2 ;;
	-f) FANOUT=$2; shift 2 ;;
	-j) DJOBS=$2; shift 2 ;;
	-o) OUT=$2; shift 2 ;;
	--no-install) INSTALL=0; shift ;;
	--readme) README=$TOP/README.md; shift ;;
	--only) ONLY=$2; shift 2 ;;
	--scale-n) SCALE_N=$2; shift 2 ;;
	--scale-sim) SCALE_SIM=$2; shift 2 ;;
	--flood-n) FLOOD_N=$2; shift 2 ;;
	--flood-sim) FLOOD_SIM=$2; shift 2 ;;
	-h | --help) sed -n "2,30p" "$0"; exit 0 ;;
	*) echo "bench: unknown option '$1' (--help)" >&2; exit 2 ;;
	esac
done
MAXN=0
for n in $SIZES; do
	[[ $n =~ ^[0-9]+$ ]] && ((n >= 1 && n <= 500)) || { echo "bench: -n wants 1..500" >&2; exit 2; }
	((n > MAXN)) && MAXN=$n
done
[[ $RUNS =~ ^[0-9]+$ ]] && ((RUNS >= 1 && RUNS <= 20)) || { echo "bench: -r wants 1..20" >&2; exit 2; }
[[ $FANOUT =~ ^[0-9]+$ ]] && ((FANOUT >= 1 && FANOUT <= 500)) || { echo "bench: -f wants 1..500" >&2; exit 2; }
[[ $DJOBS =~ ^[0-9]+$ ]] && ((DJOBS <= 10000)) || { echo "bench: -j wants 0..10000" >&2; exit 2; }
for c in $CMDS; do [[ $c == true || $c == uname ]] || { echo "bench: -c wants true and/or uname" >&2; exit 2; }; done
for s in $ONLY; do [[ $s =~ ^(fanout|dispatch|scale|flood)$ ]] || { echo "bench: --only wants fanout, dispatch, scale and/or flood" >&2; exit 2; }; done
[[ $SCALE_N =~ ^[0-9]+$ ]] && ((SCALE_N >= 2 && SCALE_N <= 10000)) || { echo "bench: --scale-n wants 2..10000" >&2; exit 2; }
[[ $SCALE_SIM =~ ^[0-9]+(:[0-9]+[KM]?)?$ ]] || { echo "bench: --scale-sim wants LATENCY_MS[:OUTPUT_BYTES]" >&2; exit 2; }
[[ $FLOOD_N =~ ^[0-9]+$ ]] && ((FLOOD_N >= 1 && FLOOD_N <= 10000)) || { echo "bench: --flood-n wants 1..10000" >&2; exit 2; }
# FLOOD_BYTES: the output of one host
FLOOD_BYTES=0
if [[ $FLOOD_SIM =~ ^[0-9]+:([0-9]{1,9})([KM]?)$ ]]; then
	FLOOD_BYTES=$((10#${BASH_REMATCH[1]}))
	case ${BASH_REMATCH[2]} in
	K) FLOOD_BYTES=$((FLOOD_BYTES << 10)) ;;
	M) FLOOD_BYTES=$((FLOOD_BYTES << 20)) ;;
	esac
fi
((FLOOD_BYTES >= 1 && FLOOD_BYTES <= 64 << 20)) ||
	{ echo "bench: --flood-sim wants LATENCY_MS:OUTPUT_BYTES, 1 byte to 64M" >&2; exit 2; }
# want SECTION: true when SECTION runs (--only, or every section)
want() { [[ -z $ONLY || " $ONLY " == *" $1 "* ]]; }

BASE=${OM_BENCH_BASEPORT:-27000}
SSHPORT=$((BASE + 1))
BUDGET=${OM_BENCH_BUDGET:-1500}
TOOL_TIMEOUT=${OM_BENCH_TOOL_TIMEOUT:-240}
FLOOD_TIMEOUT=${OM_BENCH_FLOOD_TIMEOUT:-600}
NADDR=16
BENCH_START=$(date +%s)
OM_LOG_LEVEL=warn
# The fleet: 16 loopback addresses, none of the fixtures' (127.0.0.x).
OM_DEMO_HOSTS=()
for k in $(seq 1 $NADDR); do OM_DEMO_HOSTS+=("f$k:bj:127.0.1.$k"); done
OM_DEMO_WORKERS=(bench-1:bj)
WORKER=bench-1
if [[ -n ${MAKELEVEL:-} ]]; then
	COMMAND_LINE="make bench${BENCH_ARGS:+ BENCH_ARGS='$BENCH_ARGS'}"
else
	COMMAND_LINE="bench/run.sh${ARGS_GIVEN:+ $ARGS_GIVEN}"
fi

log() { echo "bench $(date +%T): $*"; }
die() { echo "bench: $*" >&2; exit 1; }

((EUID == 0)) || die "needs root (the fleet's sshd switches to user $OM_SSH_USER)"
RUSAGE=$TOP/build/bench/om-bench-rusage
[[ -x $TOP/build/bench/om-bench-dispatch && -x $RUSAGE && -x $OM_BIN/om-master &&
	-f $OM_PLUGINS/noop.so ]] ||
	die "build first: make all build/bench/om-bench-dispatch build/bench/om-bench-rusage (make bench does)"

# --- peers: Debian 12 packages, installed when missing -------------------------------
declare -A PEER_PKG=([pssh]=pssh [pdsh]=pdsh [clush]=clustershell [ansible]=ansible-core)
declare -A PEER_BIN=([pssh]=parallel-ssh [pdsh]=pdsh [clush]=clush [ansible]=ansible)
missing=()
want fanout || TOOLS=omserver
for t in $TOOLS; do
	[[ $t == omserver ]] && continue
	[[ -n ${PEER_PKG[$t]:-} ]] || die "unknown tool '$t'"
	command -v "${PEER_BIN[$t]}" >/dev/null || missing+=("${PEER_PKG[$t]}")
done
if ((${#missing[@]})) && ((INSTALL)); then
	log "installing ${missing[*]}"
	export DEBIAN_FRONTEND=noninteractive
	apt-get install -y --no-install-recommends "${missing[@]}" >/dev/null 2>&1 ||
		{ apt-get update -q >/dev/null 2>&1 && apt-get install -y --no-install-recommends "${missing[@]}" >/dev/null; } ||
		log "apt-get install failed: the missing peers are skipped"
fi
RUN_TOOLS=()
for t in $TOOLS; do
	if [[ $t == omserver ]] || command -v "${PEER_BIN[$t]}" >/dev/null; then
		RUN_TOOLS+=("$t")
	else
		log "skipping $t: ${PEER_BIN[$t]} is not installed"
	fi
done

# --- the platform and the fleet ------------------------------------------------------
om_fixture_reap omserver-bench
DIR=$(om_fixture_mkdir omserver-bench) || exit 1
# shellcheck disable=SC2317 # called by the trap
cleanup() {
	local g i
	om_platform_stop "$DIR"
	[[ -n ${CG:-} ]] || return 0
	for ((i = 0; i < 50; i++)); do
		for g in sshd master worker pg; do rmdir "$CG/$g" 2>/dev/null; done
		rmdir "$CG" 2>/dev/null && return 0
		sleep 0.1
	done
}
trap cleanup EXIT
trap 'exit 130' INT TERM
ulimit -n 20000 2>/dev/null || true # 500 ssh children and their pipes
mkdir -p "$DIR/logs"
RAW=$DIR/raw.jsonl
: >"$RAW"

log "starting PostgreSQL, the fleet sshd (127.0.1.1-$NADDR:$SSHPORT), master and worker in $DIR"
OM_WORKER_ARGS="--max-sessions 2000 --session-idle 600" om_platform_start "$DIR" "$BASE" || exit 1
# shellcheck disable=SC1091
. "$DIR/env"
export OM_MASTER OM_MASTER_KEY OM_TOKEN
OMCTL=$OM_BIN/omctl
SSHD_PID=$(om__pidfile_ours "$DIR/ssh/sshd.pid" "$DIR") || die "no fleet sshd"
MASTER_PID=$(om__pidfile_ours "$DIR/master.pid" "$DIR") || die "no master"
PG_PID=$(head -n 1 "$DIR/pg/data/postmaster.pid")
# cpuacct groups (see the top): sshd, master, worker, pg
CG=/sys/fs/cgroup/cpuacct/omserver-bench.$$
cg_add() { # GROUP PID...: moves the processes (threads and future children follow)
	local g=$1 p
	shift
	[[ -n $CG ]] || return 0
	for p in "$@"; do echo "$p" >"$CG/$g/cgroup.procs" 2>/dev/null; done
	return 0
}
if mkdir "$CG" 2>/dev/null && mkdir "$CG/sshd" "$CG/master" "$CG/worker" "$CG/pg" 2>/dev/null &&
	echo "$SSHD_PID" >"$CG/sshd/cgroup.procs" 2>/dev/null; then
	CPU_HOW=cgroup
	cg_add master "$MASTER_PID"
	cg_add worker "$(om__pidfile_ours "$DIR/worker-$WORKER.pid" "$DIR")"
	# shellcheck disable=SC2046 # one pid a word
	cg_add pg "$PG_PID" $(om__descendants "$PG_PID")
else
	for g in sshd master worker pg; do rmdir "$CG/$g" 2>/dev/null; done
	rmdir "$CG" 2>/dev/null
	CG=
	CPU_HOW=proc
fi

host_name() { printf 'h%04d.l%d\n' "$1" $((($1 - 1) % NADDR + 1)); }

if want fanout || want dispatch; then
# omserver inventory: the bench hosts, groups n10, n100, ... for the sizes
{
	echo "[bench]"
	for ((i = 1; i <= MAXN; i++)); do
		printf '%s ansible_host=127.0.1.%d ansible_port=%d ansible_user=%s\n' "$(host_name "$i")" \
			$(((i - 1) % NADDR + 1)) "$SSHPORT" "$OM_SSH_USER"
	done
	printf '\n[bench:vars]\nidc=bj\n'
	for n in $SIZES; do
		printf '\n[n%d]\n' "$n"
		for ((i = 1; i <= n; i++)); do host_name "$i"; done
	done
} >"$DIR/bench.ini"
"$OMCTL" hosts import "$DIR/bench.ini" >"$DIR/logs/import.out" 2>&1 ||
	{ cat "$DIR/logs/import.out" >&2; die "omctl hosts import failed"; }

# OpenSSH side: ssh_config, known_hosts (names and addresses), host lists, ansible.cfg
P=$DIR/peers
mkdir -p "$P/ansible-local"
chmod 700 "$P/ansible-local"
{
	for k in $(seq 1 $NADDR); do printf 'Host *.l%d\n  HostName 127.0.1.%d\n' "$k" "$k"; done
	cat <<EOF
Host *
  Port $SSHPORT
  User $OM_SSH_USER
  AddressFamily inet
  IdentityFile $DIR/ssh/id_ed25519
  IdentitiesOnly yes
  UserKnownHostsFile $P/known_hosts
  GlobalKnownHostsFile /dev/null
  StrictHostKeyChecking yes
  CheckHostIP no
  UpdateHostKeys no
  HashKnownHosts no
  BatchMode yes
  PasswordAuthentication no
  KbdInteractiveAuthentication no
  KexAlgorithms curve25519-sha256
  ForwardAgent no
  ForwardX11 no
  ConnectTimeout 30
  ControlMaster no
  ControlPath none
  LogLevel ERROR
EOF
} >"$P/ssh_config"
hostkey=$(cut -d' ' -f1,2 "$DIR/ssh/ssh_host_ed25519_key.pub")
{
	for k in $(seq 1 $NADDR); do echo "[127.0.1.$k]:$SSHPORT $hostkey"; done
	for ((i = 1; i <= MAXN; i++)); do echo "[$(host_name "$i")]:$SSHPORT $hostkey"; done
} >"$P/known_hosts"
for n in $SIZES; do
	for ((i = 1; i <= n; i++)); do host_name "$i"; done >"$P/hosts.$n"
done
cat >"$P/ansible.cfg" <<EOF
[defaults]
host_key_checking = True
gathering = explicit
interpreter_python = /usr/bin/python3
local_tmp = $P/ansible-local
remote_user = $OM_SSH_USER
retry_files_enabled = False
nocolor = True
timeout = 60
forks = $FANOUT
[ssh_connection]
ssh_args = -F $P/ssh_config -o ControlMaster=no -o ControlPath=none
pipelining = False
EOF
out=$(timeout 20 ssh -F "$P/ssh_config" "$(host_name 1)" 'echo ok' 2>&1)
[[ $out == ok ]] || die "ssh to the fleet does not work: $out"
fi

# --- counters -------------------------------------------------------------------------
TICK=$(getconf CLK_TCK)
now_ns() { date +%s%N; }
# utime+stime of one process, in ticks
pid_ticks() {
	local s
	s=$(cat "/proc/$1/stat" 2>/dev/null) || { echo 0; return; }
	s=${s##*) }
	# shellcheck disable=SC2086
	set -- $s
	echo $((${12} + ${13}))
}
# utime+stime+cutime+cstime summed over a process and all its descendants
# (live ones; the dead are in their parents' cutime), in ticks
tree_ticks() {
	cat /proc/[0-9]*/stat 2>/dev/null | awk -v root="$1" '
	{ pid = $1; s = $0; sub(/^.*\) /, "", s); split(s, f, " ")
	  par[pid] = f[2]; t[pid] = f[12] + f[13] + f[14] + f[15] }
	END { sum = 0
	  for (p in t) { q = p; for (d = 0; d < 64 && q != root && q > 1; d++) q = par[q]
	    if (q == root) sum += t[p] }
	  print sum }'
}
# CPU in ns of: sshd (the fleet's tree), master, worker (PID), pg (the tree)
cpu_ns() {
	if [[ -n $CG ]]; then
		cat "$CG/$1/cpuacct.usage"
		return
	fi
	case $1 in
	sshd) echo $(($(tree_ticks "$SSHD_PID") * 1000000000 / TICK)) ;;
	master) echo $(($(pid_ticks "$MASTER_PID") * 1000000000 / TICK)) ;;
	worker) echo $(($(pid_ticks "$2") * 1000000000 / TICK)) ;;
	pg) echo $(($(tree_ticks "$PG_PID") * 1000000000 / TICK)) ;;
	esac
}
ns_s() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.4f", (b - a) / 1e9 }'; }
# processes under the fleet sshd (each connection: a monitor and a session)
sshd_kids() {
	local c
	c=$(pgrep -c -P "$SSHD_PID" 2>/dev/null)
	echo "${c:-0}"
}
# wait (at most 15 s) until at most $1 connections are left on the fleet sshd
quiesce() {
	local i
	for ((i = 0; i < 150; i++)); do
		(($(sshd_kids) <= ${1:-0})) && return 0
		sleep 0.1
	done
	log "warning: $(sshd_kids) sshd connections still open after 15 s"
}
worker_pid() { om__pidfile_ours "$DIR/worker-$WORKER.pid" "$DIR"; }
stop_worker() {
	local pid i
	pid=$(worker_pid) || return 0
	kill -TERM "$pid" 2>/dev/null
	for ((i = 0; i < 100; i++)); do om__pid_alive "$pid" || return 0; sleep 0.1; done
	kill -KILL "$pid" 2>/dev/null
}
# connected_count REGEX: workers connected whose names match REGEX (anchored)
connected_count() { "$OMCTL" workers list 2>/dev/null | grep -cE "^($1) +[a-z]+ +connected "; }
worker_connected() { (($(connected_count "$WORKER") > 0)); }
# wait_connected REGEX N: up to 30 s for N connected workers matching REGEX
wait_connected() {
	local i
	for ((i = 0; i < 150; i++)); do
		(($(connected_count "$1") >= $2)) && return 0
		sleep 0.2
	done
	return 1
}
# a fresh worker process, connected, with no session open
fresh_worker() {
	local i
	stop_worker
	for ((i = 0; i < 100; i++)); do worker_connected || break; sleep 0.1; done
	quiesce 0
	OM_WORKER_ARGS="--max-sessions 2000 --session-idle 600" om_worker_start "$DIR" "$WORKER" bj
	cg_add worker "$(cat "$DIR/worker-$WORKER.pid")"
	for ((i = 0; i < 200; i++)); do
		worker_connected && return 0
		sleep 0.1
	done
	om_log_tail "$DIR/worker-$WORKER.log" >&2
	die "worker $WORKER did not connect"
}
over_budget() { (($(date +%s) - BENCH_START > BUDGET)); }

remote_cmd() { case $1 in true) echo true ;; uname) echo "uname -a" ;; esac; }

# count_ok TOOL CMD N OUTFILE RC: hosts that succeeded
count_ok() {
	local tool=$1 cmd=$2 n=$3 f=$4 rc=$5 bad
	case $tool in
	omserver*) grep -c ': ok (' "$f" ;;
	pssh) grep -c '\[SUCCESS\]' "$f" ;;
	pdsh | clush)
		if [[ $cmd == uname ]]; then
			grep -cE '^h[0-9]{4}\.l[0-9]+: Linux ' "$f"
		else
			# `true` prints nothing: failures are host-named error lines and rc != 0 (-S)
			bad=$(grep -oE '\bh[0-9]{4}\.l[0-9]+\b' "$f" | sort -u | wc -l)
			if ((rc != 0 && bad == 0)); then echo 0; else echo $((n - bad)); fi
		fi
		;;
	ansible) grep -cE '^h[0-9]{4}\.l[0-9]+ \| (CHANGED|SUCCESS) \|' "$f" ;;
	esac
}

# tool_argv TOOL N CMD: the command line in ARGV
tool_argv() {
	local tool=$1 n=$2 cmd
	cmd=$(remote_cmd "$3")
	case $tool in
	omserver) ARGV=("$OMCTL" run -t "group:n$n" -m shell -a "$cmd" --forks "$FANOUT") ;;
	pssh) ARGV=(parallel-ssh -h "$P/hosts.$n" -p "$FANOUT" -t 120 -i -x "-F $P/ssh_config" "$cmd") ;;
	pdsh) ARGV=(env PDSH_SSH_ARGS_APPEND="-F $P/ssh_config" pdsh -R ssh -S -f "$FANOUT" -t 60
		-l "$OM_SSH_USER" -w "^$P/hosts.$n" "$cmd") ;;
	clush) ARGV=(clush -S -f "$FANOUT" -t 60 -u 120 -o "-F $P/ssh_config" --hostfile="$P/hosts.$n"
		"$cmd") ;;
	ansible) ARGV=(env ANSIBLE_CONFIG="$P/ansible.cfg" ANSIBLE_HOME="$P/ansible-home"
		ansible all -i "$P/hosts.$n" -m raw -a "$cmd" -f "$FANOUT" -o) ;;
	esac
}

# measure TOOL MODE N CMD REP: one timed run, one JSON line in $RAW
measure() {
	local tool=$1 mode=$2 n=$3 cmd=$4 rep=$5 name out tf rc wpid
	local s0 s1 m0 m1 w0 w1 g0 g1 ok ctl cli pg srv wall mas wor
	name="$tool-$mode.n$n.$cmd.r$rep"
	out=$DIR/logs/$name.out
	tf=$DIR/logs/$name.rusage
	tool_argv "$tool" "$n" "$cmd"
	[[ $tool == omserver && $mode == warm ]] || quiesce 0
	if [[ $tool == omserver ]]; then
		wpid=$(worker_pid) || die "worker is not running"
		m0=$(cpu_ns master) w0=$(cpu_ns worker "$wpid") g0=$(cpu_ns pg)
	fi
	s0=$(cpu_ns sshd)
	"$RUSAGE" "$tf" timeout "$TOOL_TIMEOUT" "${ARGV[@]}" >"$out" 2>&1 </dev/null
	rc=$?
	[[ $tool == omserver ]] || quiesce 0
	s1=$(cpu_ns sshd)
	read -r wall cli < <(awk '{ printf "%.4f %.4f\n", $1, $2 + $3 }' "$tf")
	srv=$(ns_s "$s0" "$s1")
	if [[ $tool == omserver ]]; then
		m1=$(cpu_ns master) w1=$(cpu_ns worker "$wpid") g1=$(cpu_ns pg)
		mas=$(ns_s "$m0" "$m1") wor=$(ns_s "$w0" "$w1") pg=$(ns_s "$g0" "$g1")
		ctl=$(awk -v a="$mas" -v b="$wor" 'BEGIN { printf "%.4f", a + b }')
	else
		ctl=$cli cli=null pg=null mas=null wor=null
	fi
	ok=$(count_ok "$tool" "$cmd" "$n" "$out" "$rc")
	printf '{"tool":"%s","mode":"%s","n":%d,"cmd":"%s","rep":%d,"wall_s":%s,"ok":%d,"rc":%d,"controller_cpu_s":%s,"master_cpu_s":%s,"worker_cpu_s":%s,"client_cpu_s":%s,"pg_cpu_s":%s,"sshd_cpu_s":%s,"fanout":%d,"load1":%s}\n' \
		"$tool" "$mode" "$n" "$(remote_cmd "$cmd")" "$rep" "$wall" "$ok" "$rc" "$ctl" \
		"$mas" "$wor" "$cli" "$pg" "$srv" "$FANOUT" "$(cut -d' ' -f1 /proc/loadavg)" >>"$RAW"
	log "$(printf '%-8s %-5s n=%-3d %-5s r%d  wall %7.3f s  %4d/%d ok  controller CPU %.3f s  sshd CPU %.3f s' \
		"$tool" "$mode" "$n" "$cmd" "$rep" "$wall" "$ok" "$n" "$ctl" "$srv")"
	((ok == n)) || log "warning: $tool $mode: $ok of $n hosts ok (exit $rc), see $out"
}

# omserver cold then warm, plus the worker's RSS before and after the sessions
measure_omserver() {
	local n=$1 cmd=$2 rep=$3 wpid rss0 rss1
	fresh_worker
	wpid=$(worker_pid)
	rss0=$(awk '/^VmRSS:/ { print $2 }' "/proc/$wpid/status")
	measure omserver cold "$n" "$cmd" "$rep"
	measure omserver warm "$n" "$cmd" "$rep"
	rss1=$(awk '/^VmRSS:/ { print $2 }' "/proc/$wpid/status")
	printf '{"kind":"rss","n":%d,"cmd":"%s","rep":%d,"rss0_kb":%d,"rss1_kb":%d,"sessions":%d}\n' \
		"$n" "$(remote_cmd "$cmd")" "$rep" "$rss0" "$rss1" "$(($(sshd_kids) / 1))" >>"$RAW"
	# the pooled sessions go, so the peers that follow find an idle sshd
	stop_worker
}

# --- fan-out: every size, command and repetition; tools interleaved ----------------
SKIPPED=0
ntools=${#RUN_TOOLS[@]}
want fanout || SIZES=
for n in $SIZES; do
	for cmd in $CMDS; do
		for ((rep = 1; rep <= RUNS; rep++)); do
			if over_budget; then
				log "over the budget of $BUDGET s: skipping n=$n $cmd repetition $rep"
				SKIPPED=$((SKIPPED + 1))
				continue
			fi
			for ((k = 0; k < ntools; k++)); do
				tool=${RUN_TOOLS[$(((k + rep - 1) % ntools))]}
				if [[ $tool == omserver ]]; then
					measure_omserver "$n" "$cmd" "$rep"
				else
					measure "$tool" fresh "$n" "$cmd" "$rep"
				fi
			done
		done
	done
done

# --- dispatch latency: noop jobs on one host, one client session ---------------------
if ((DJOBS > 0)) && want dispatch; then
	fresh_worker
	wpid=$(worker_pid)
	log "dispatch: $DJOBS noop jobs on $(host_name 1), one after the other"
	m0=$(cpu_ns master) w0=$(cpu_ns worker "$wpid") g0=$(cpu_ns pg)
	if timeout 600 "$TOP/build/bench/om-bench-dispatch" -n "$DJOBS" -w 5 "$(host_name 1)" \
		>"$DIR/logs/dispatch.json" 2>"$DIR/logs/dispatch.err"; then
		m1=$(cpu_ns master) w1=$(cpu_ns worker "$wpid") g1=$(cpu_ns pg)
		# the 5 warm-up jobs are in the CPU deltas, not in the latencies
		printf '{"kind":"dispatch","result":%s,"master_cpu_s":%s,"worker_cpu_s":%s,"pg_cpu_s":%s,"jobs_cpu":%d}\n' \
			"$(cat "$DIR/logs/dispatch.json")" "$(ns_s "$m0" "$m1")" "$(ns_s "$w0" "$w1")" \
			"$(ns_s "$g0" "$g1")" $((DJOBS + 5)) >>"$RAW"
		log "dispatch: $(cat "$DIR/logs/dispatch.json")"
	else
		log "warning: om-bench-dispatch failed: $(cat "$DIR/logs/dispatch.err")"
	fi
fi

# --- scale: SCALE_N simulated hosts over two IDCs, one job ----------------------------
rss_kb() { awk -v k="$2:" '$1 == k { print $2 }' "/proc/$1/status" 2>/dev/null || echo 0; }
if want scale; then
	log "scale: $SCALE_N simulated hosts (--sim $SCALE_SIM) across IDCs sima and simb"
	# stop the SSH worker: the whole machine goes to the simulation
	stop_worker
	{
		for idc in sima simb; do
			echo "[$idc]"
			for ((i = 1; i <= SCALE_N; i++)); do
				if [[ $idc == sima ]] && ((i % 2 == 0)); then continue; fi
				if [[ $idc == simb ]] && ((i % 2 == 1)); then continue; fi
				printf 's%05d.sim ansible_host=10.%d.%d.%d ansible_user=%s\n' "$i" $((i / 65536)) \
					$((i / 256 % 256)) $((i % 256)) "$OM_SSH_USER"
			done
			printf '\n[%s:vars]\nidc=%s\n\n' "$idc" "$idc"
		done
		printf '[scale:children]\nsima\nsimb\n'
	} >"$DIR/scale.ini"
	"$OMCTL" hosts import "$DIR/scale.ini" >"$DIR/logs/scale-import.out" 2>&1 ||
		{ cat "$DIR/logs/scale-import.out" >&2; die "omctl hosts import (scale) failed"; }
	SIMW=()
	for w in sim-a:sima sim-b:simb; do
		om_enroll_token "$DIR" "${w##*:}" >"$DIR/worker-${w%%:*}.enroll" || die "no enroll token"
		OM_WORKER_ARGS="--sim $SCALE_SIM --forks 10000" om_worker_start "$DIR" "${w%%:*}" "${w##*:}"
		SIMW+=("$(cat "$DIR/worker-${w%%:*}.pid")")
	done
	wait_connected 'sim-[ab]' 2 || { om_log_tail "$DIR/worker-sim-a.log" >&2; die "the sim workers did not connect"; }
	# peak RSS from here: clear_refs 5 resets VmHWM
	for p in "$MASTER_PID" "${SIMW[@]}"; do echo 5 >"/proc/$p/clear_refs" 2>/dev/null; done
	m0=$(cpu_ns master) g0=$(cpu_ns pg)
	wa0=$(pid_ticks "${SIMW[0]}") wb0=$(pid_ticks "${SIMW[1]}")
	"$RUSAGE" "$DIR/logs/scale.rusage" timeout "$TOOL_TIMEOUT" "$OMCTL" run -t group:scale -m shell \
		-a "uname -a" --forks "$SCALE_N" >"$DIR/logs/scale.out" 2>&1 </dev/null
	rc=$?
	m1=$(cpu_ns master) g1=$(cpu_ns pg)
	wa1=$(pid_ticks "${SIMW[0]}") wb1=$(pid_ticks "${SIMW[1]}")
	read -r wall cli < <(awk '{ printf "%.4f %.4f\n", $1, $2 + $3 }' "$DIR/logs/scale.rusage")
	jid=$(om_psql "$DIR" "SELECT max(id) FROM jobs WHERE selector = 'group:scale'")
	stored=$(om_psql "$DIR" "SELECT count(*) FROM job_hosts WHERE job_id = ${jid:-0} AND state = 'ok'")
	outb=$(om_psql "$DIR" "SELECT coalesce(sum(length(data)), 0) FROM job_events WHERE job_id = ${jid:-0}" 2>/dev/null)
	printf '{"kind":"scale","n":%d,"sim":"%s","wall_s":%s,"ok":%d,"rc":%d,"stored_ok":%d,"output_bytes_stored":%s,"master_cpu_s":%s,"worker_cpu_s":%s,"client_cpu_s":%s,"pg_cpu_s":%s,"master_peak_rss_kb":%d,"worker_peak_rss_kb":[%d,%d],"worker_rss_kb":[%d,%d],"forks":%d,"load1":%s,"date":"%s","command":"%s"}\n' \
		"$SCALE_N" "$SCALE_SIM" "$wall" "$(grep -c ': ok (' "$DIR/logs/scale.out")" "$rc" "${stored:-0}" \
		"${outb:-null}" "$(ns_s "$m0" "$m1")" \
		"$(awk -v a=$((wa1 - wa0 + wb1 - wb0)) -v t="$TICK" 'BEGIN { printf "%.4f", a / t }')" \
		"$cli" "$(ns_s "$g0" "$g1")" "$(rss_kb "$MASTER_PID" VmHWM)" \
		"$(rss_kb "${SIMW[0]}" VmHWM)" "$(rss_kb "${SIMW[1]}" VmHWM)" \
		"$(rss_kb "${SIMW[0]}" VmRSS)" "$(rss_kb "${SIMW[1]}" VmRSS)" "$SCALE_N" \
		"$(cut -d' ' -f1 /proc/loadavg)" "$(date -u +%Y-%m-%dT%H:%M:%SZ)" "$COMMAND_LINE" >>"$RAW"
	log "scale: $(tail -n 1 "$RAW")"
	((rc == 0 && ${stored:-0} == SCALE_N)) ||
		log "warning: scale: ${stored:-0} of $SCALE_N results stored ok (exit $rc), see $DIR/logs/scale.out"
	for p in "${SIMW[@]}"; do kill -TERM "$p" 2>/dev/null; done
fi

# --- flood: FLOOD_N simulated hosts print FLOOD_BYTES each; master RSS over time ----
# rss_sample T0_US PID...: one line "SECONDS_SINCE_T0 KB..." of the processes' VmRSS
# (0: gone), without a fork: it runs every 0.25 s while the flood runs
now_us() { echo "${EPOCHREALTIME//[!0-9]/}"; }
rss_sample() {
	local t=$(($(now_us) - $1)) p k v _ line
	shift
	printf -v line '%d.%02d' $((t / 1000000)) $((t / 10000 % 100))
	for p in "$@"; do
		k='' v=0
		while read -r k v _; do [[ $k == VmRSS: ]] && break; done 2>/dev/null <"/proc/$p/status"
		[[ $k == VmRSS: ]] || v=0
		line+=" $v"
	done
	echo "$line"
}
if want flood && over_budget; then
	log "flood: over the budget of $BUDGET s, skipped"
	printf '{"kind":"flood","n":%d,"sim":"%s","skipped":"over the time budget of %d s","date":"%s","command":"%s"}\n' \
		"$FLOOD_N" "$FLOOD_SIM" "$BUDGET" "$(date -u +%Y-%m-%dT%H:%M:%SZ)" "$COMMAND_LINE" >>"$RAW"
elif want flood; then
	total=$((FLOOD_N * FLOOD_BYTES))
	log "flood: $FLOOD_N simulated hosts (--sim $FLOOD_SIM), $((total >> 20)) MiB of output, IDC flood"
	# alone on the machine: the SSH worker and scale's sim workers go
	stop_worker
	pids=()
	for w in sim-a sim-b; do
		if p=$(om__pidfile_ours "$DIR/worker-$w.pid" "$DIR"); then pids+=("$p"); fi
	done
	om__terminate 10 "$DIR" "${pids[@]}"
	{
		echo "[flood]"
		for ((i = 1; i <= FLOOD_N; i++)); do
			printf 'f%04d.sim ansible_host=10.200.%d.%d ansible_user=%s\n' "$i" $((i / 256 % 256)) \
				$((i % 256)) "$OM_SSH_USER"
		done
		printf '\n[flood:vars]\nidc=flood\n'
	} >"$DIR/flood.ini"
	"$OMCTL" hosts import "$DIR/flood.ini" >"$DIR/logs/flood-import.out" 2>&1 ||
		{ cat "$DIR/logs/flood-import.out" >&2; die "omctl hosts import (flood) failed"; }
	om_enroll_token "$DIR" flood >"$DIR/worker-flood-1.enroll" || die "no enroll token"
	OM_WORKER_ARGS="--sim $FLOOD_SIM --forks $FLOOD_N" om_worker_start "$DIR" flood-1 flood
	FW=$(cat "$DIR/worker-flood-1.pid")
	wait_connected flood-1 1 || { om_log_tail "$DIR/worker-flood-1.log" >&2; die "the flood worker did not connect"; }
	# peak RSS from here: clear_refs 5 resets VmHWM
	for p in "$MASTER_PID" "$FW"; do echo 5 >"/proc/$p/clear_refs" 2>/dev/null; done
	m0=$(cpu_ns master) g0=$(cpu_ns pg) w0=$(pid_ticks "$FW")
	t0=$(now_us)
	rss_sample "$t0" "$MASTER_PID" "$FW" >"$DIR/logs/flood.rss" # start: before the submit
	(
		while sleep 0.25; do
			rss_sample "$t0" "$MASTER_PID" "$FW"
		done
	) >>"$DIR/logs/flood.rss" &
	SAMPLER=$!
	"$RUSAGE" "$DIR/logs/flood.rusage" timeout "$FLOOD_TIMEOUT" "$OMCTL" run -t group:flood -m shell \
		-a "cat big" --forks "$FLOOD_N" >/dev/null 2>"$DIR/logs/flood.err" </dev/null
	rc=$?
	m1=$(cpu_ns master) g1=$(cpu_ns pg) w1=$(pid_ticks "$FW")
	kill "$SAMPLER" 2>/dev/null
	wait "$SAMPLER" 2>/dev/null
	rss_sample "$t0" "$MASTER_PID" "$FW" >>"$DIR/logs/flood.rss"
	read -r wall cli < <(awk '{ printf "%.4f %.4f\n", $1, $2 + $3 }' "$DIR/logs/flood.rusage")
	jid=$(om_psql "$DIR" "SELECT max(id) FROM jobs WHERE selector = 'group:flood'")
	stored=$(om_psql "$DIR" "SELECT count(*) FROM job_hosts WHERE job_id = ${jid:-0} AND state = 'ok'")
	outb=$(om_psql "$DIR" "SELECT coalesce(sum(length(data)), 0) FROM job_events WHERE job_id = ${jid:-0}" 2>/dev/null)
	# RSS: start (the first sample, before the submit), median, max, end (after omctl
	# returned); the series: the start, then at most 59 points, each the max of its slice
	rssj=$(awk '
		BEGIN { n = 0; nw = 0 }
		$2 > 0 { t[n] = $1; m[n] = $2; if ($3 > 0) { w[nw++] = $3 }; n++ }
		function median(a, k,   i, j, x) {
			for (i = 1; i < k; i++) { x = a[i]; for (j = i - 1; j >= 0 && a[j] > x; j--) a[j + 1] = a[j]; a[j + 1] = x }
			return k ? (k % 2 ? a[(k - 1) / 2] : int((a[k / 2 - 1] + a[k / 2]) / 2)) : 0
		}
		END {
			mx = 0; for (i = 0; i < n; i++) { s[i] = m[i]; if (m[i] > mx) mx = m[i] }
			wx = 0; for (i = 0; i < nw; i++) if (w[i] > wx) wx = w[i]
			printf "\"master_rss_kb\":{\"start\":%d,\"p50\":%d,\"max\":%d,\"end\":%d,\"samples\":%d},", \
				m[0], median(s, n), mx, m[n - 1], n
			printf "\"worker_rss_kb\":{\"start\":%d,\"max\":%d,\"end\":%d},", w[0], wx, w[nw - 1]
			step = int((n - 1 + 58) / 59); if (step < 1) step = 1
			printf "\"master_rss_series\":["
			if (n) printf "[%s,%d]", t[0], m[0]
			for (i = 1; i < n; i += step) {
				b = 0; for (j = i; j < i + step && j < n; j++) if (m[j] > b) b = m[j]
				printf ",[%s,%d]", t[i], b
			}
			printf "]"
		}' "$DIR/logs/flood.rss")
	printf '{"kind":"flood","n":%d,"sim":"%s","bytes_per_host":%d,"total_bytes":%d,"wall_s":%s,"rc":%d,"stored_ok":%d,"output_bytes_stored":%s,"mb_per_s":%s,%s,"master_peak_rss_kb":%d,"worker_peak_rss_kb":%d,"master_cpu_s":%s,"worker_cpu_s":%s,"client_cpu_s":%s,"pg_cpu_s":%s,"forks":%d,"load1":%s,"date":"%s","command":"%s"}\n' \
		"$FLOOD_N" "$FLOOD_SIM" "$FLOOD_BYTES" "$total" "$wall" "$rc" "${stored:-0}" "${outb:-null}" \
		"$(awk -v b="${outb:-0}" -v w="$wall" 'BEGIN { printf "%.1f", (w > 0 ? b / 1e6 / w : 0) }')" "$rssj" \
		"$(rss_kb "$MASTER_PID" VmHWM)" "$(rss_kb "$FW" VmHWM)" "$(ns_s "$m0" "$m1")" \
		"$(awk -v a=$((w1 - w0)) -v t="$TICK" 'BEGIN { printf "%.4f", a / t }')" "$cli" "$(ns_s "$g0" "$g1")" \
		"$FLOOD_N" "$(cut -d' ' -f1 /proc/loadavg)" "$(date -u +%Y-%m-%dT%H:%M:%SZ)" "$COMMAND_LINE" >>"$RAW"
	log "flood: $(tail -n 1 "$RAW" | cut -c 1-400)"
	((rc == 0 && ${stored:-0} == FLOOD_N)) ||
		log "warning: flood: ${stored:-0} of $FLOOD_N results stored ok (exit $rc), see $DIR/logs/flood.err"
	om__terminate 10 "$DIR" "$FW"
fi

# --- report ---------------------------------------------------------------------------
ELAPSED=$(($(date +%s) - BENCH_START))
{
	printf '{"kind":"meta","command":"%s","elapsed_s":%d,"skipped_reps":%d,"fanout":%d,"runs":%d,"cpu_from":"%s"' \
		"$COMMAND_LINE" "$ELAPSED" "$SKIPPED" "$FANOUT" "$RUNS" "$CPU_HOW"
	printf ',"date":"%s","kernel":"%s","cpus":%d' "$(date -u +%Y-%m-%dT%H:%M:%SZ)" "$(uname -r)" "$(nproc)"
	printf ',"cpu_model":"%s"' "$(awk -F': ' '/^model name/ { print $2; exit }' /proc/cpuinfo | tr -d '"')"
	ver() { dpkg-query -W -f='${Version}' "$1" 2>/dev/null; }
	printf ',"versions":{"openssh-server":"%s","libssh2":"%s","postgresql":"%s","pssh":"%s","pdsh":"%s","clustershell":"%s","ansible-core":"%s"}}\n' \
		"$(ver openssh-server)" "$(ver libssh2-1)" "$(ver postgresql-15)" "$(ver pssh)" "$(ver pdsh)" \
		"$(ver clustershell)" "$(ver ansible-core)"
} >>"$RAW"
mkdir -p "$OUT"
if [[ -n $ONLY && -s $OUT/latest.raw.jsonl ]]; then
	# --only: the other sections' rows (and, without fanout, the meta) from the last run
	python3 - "$OUT/latest.raw.jsonl" "$RAW" "$ONLY" >"$DIR/merged.jsonl" <<'PY' || die "cannot merge with the last run"
import json, sys
old, new, only = sys.argv[1], sys.argv[2], sys.argv[3].split()
def section(r):  # fanout, dispatch, scale, flood (or meta)
    if "tool" in r or r.get("kind") == "rss":
        return "fanout"
    return r.get("kind")
ran = set(only) | ({"meta"} if "fanout" in only else set())
keep = [json.loads(l) for l in open(old) if l.strip()]
keep = [r for r in keep if section(r) not in ran]
rows = [json.loads(l) for l in open(new) if l.strip()]
rows = [r for r in rows if not (r.get("kind") == "meta" and "fanout" not in only)]
for r in keep + rows:
    print(json.dumps(r))
PY
	cp "$DIR/merged.jsonl" "$RAW"
fi
python3 "$HERE/report.py" "$RAW" "$OUT" ${README:+"$README"} || die "report.py failed (raw rows: $RAW)"
cp "$RAW" "$OUT/latest.raw.jsonl"
sed -n '/^## Targets/,/^## `true`/p' "$OUT/latest.md" | sed '$d'
log "done in $ELAPSED s: $OUT/latest.md, $OUT/latest.json"
