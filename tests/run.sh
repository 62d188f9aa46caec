#!/usr/bin/env bash
# `make check` runner (and `make unit` with OM_SKIP_INTEGRATION=1).
#
#   1. unit tests   build/asan/tests/*_test, cmocka TAP output; a throwaway
#                   PostgreSQL on port 26390 is exported as OM_TEST_PGCONN
#                   (unless OM_TEST_PGCONN is already set); then
#                   tests/plugin_sdk.sh as one case (SDK install, example
#                   plugin built out of tree, loaded)
#   2. fuzz         libFuzzer harnesses build/fuzz/bin/fuzz_* (clang, make
#                   fuzz-build): each runs its regression inputs
#                   tests/data/fuzz/regress/<name>/ once, then fuzzes for
#                   OM_FUZZ_SECONDS=20, two at a time (tests/fuzz/libfuzzer.sh).
#                   Without clang's libFuzzer, or with OM_FUZZ_ENGINE=driver,
#                   the gcc driver build/asan/fuzz/fuzz_* instead, over the seeds
#                   and regression inputs, then mutating for OM_FUZZ_SECONDS
#                   (at most OM_FUZZ_RUNS=20000 inputs)
#   3. integration  tests/integration/*.sh (root only; skipped with
#                   OM_SKIP_INTEGRATION=1), TAP lines "ok - name" / "not ok - name"
#
# Logs go to build/test-logs/; a failing binary's log is shown.  The last line
# is "N passed, N failed" (", N skipped" when some were); exit 1 if any failed.
set -uo pipefail

TOP=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$TOP" || exit 2
# shellcheck source=tests/fixture/lib.sh
. tests/fixture/lib.sh

LOGS=build/test-logs
mkdir -p "$LOGS" || exit 2

UNIT_TIMEOUT=300
FUZZ_SECONDS=${OM_FUZZ_SECONDS:-20}
FUZZ_TIMEOUT=$((FUZZ_SECONDS + 120))
INTEGRATION_TIMEOUT=900
PG_PORT=26390

PASS=0 FAIL=0 SKIP=0                      # totals
declare -A SEC_PASS SEC_FAIL SEC_SKIP     # per section
SECTIONS=()
FAILED_NAMES=()
CHILD=""   # the test process running now (a `timeout` process)
FUZZ_PIDS=()  # fuzz harnesses running now, two at a time (`timeout` processes)
PGDIR=""

section() {
	SECTIONS+=("$1")
	SEC_PASS[$1]=0 SEC_FAIL[$1]=0 SEC_SKIP[$1]=0
	echo
	echo "== $1: $2"
}

# count SECTION PASSED FAILED SKIPPED
count() {
	SEC_PASS[$1]=$((SEC_PASS[$1] + $2))
	SEC_FAIL[$1]=$((SEC_FAIL[$1] + $3))
	SEC_SKIP[$1]=$((SEC_SKIP[$1] + $4))
	PASS=$((PASS + $2)) FAIL=$((FAIL + $3)) SKIP=$((SKIP + $4))
}

show_log() {
	local log=$1 n
	n=$(wc -l <"$log")
	if ((n > 200)); then
		echo "    ... ($n lines, last 200 shown; full log: $log)"
		tail -n 200 "$log" | sed 's/^/    | /'
	else
		sed 's/^/    | /' "$log"
	fi
}

# run_logged LOG SECONDS LIVE CMD...: runs CMD with a time limit, output to
# LOG (and to the terminal, indented, when LIVE=1); exit status in RC.  It
# runs in the background so that a signal to this script is handled at once.
run_logged() {
	local log=$1 secs=$2 live=$3 tailpid=""
	shift 3
	: >"$log"
	timeout -k 10 "$secs" "$@" </dev/null >"$log" 2>&1 &
	CHILD=$!
	if ((live)); then
		tail -n +1 -f --pid="$CHILD" "$log" 2>/dev/null | sed -u 's/^/    /' &
		tailpid=$!
	fi
	RC=0
	wait "$CHILD" || RC=$?
	CHILD=""
	if [[ -n $tailpid ]]; then wait "$tailpid" 2>/dev/null; fi
	if ((RC == 124)); then
		echo "*** timed out after $secs s" >>"$log"
		((live)) && echo "    *** timed out after $secs s"
	fi
	return 0
}

# tap_counts LOG: "passed failed skipped" from TAP lines ("ok 3 - x",
# "ok - x", "not ok ...", "... # SKIP ...").  cmocka 1.1.5 prints a skipped
# test as "not ok N # SKIP name"; its "# ok - group" lines are comments.
tap_counts() {
	awk '
		/^(not )?ok( |$)/ {
			if (tolower($0) ~ /^(not )?ok[^#]*# skip/) s++
			else if ($1 == "ok") p++
			else f++
		}
		END { print p + 0, f + 0, s + 0 }' "$1"
}

# shellcheck disable=SC2317 # called from the EXIT trap
cleanup() {
	if [[ -n $CHILD ]]; then
		# timeout passes the signal on to the test, which stops its platform
		kill -TERM "$CHILD" 2>/dev/null
		wait "$CHILD" 2>/dev/null
	fi
	if ((${#FUZZ_PIDS[@]})); then
		kill -TERM "${FUZZ_PIDS[@]}" 2>/dev/null
		wait "${FUZZ_PIDS[@]}" 2>/dev/null
	fi
	if [[ -n $PGDIR ]]; then
		om_pg_stop "$PGDIR"
		rm -rf -- "$PGDIR"
	fi
}
trap cleanup EXIT
trap 'echo; echo "interrupted"; exit 130' INT TERM

START=$SECONDS

# --- 1. unit tests --------------------------------------------------------------
section unit "build/asan/tests/*_test (cmocka, ASan/UBSan)"
if [[ -n ${OM_TEST_PGCONN:-} ]]; then
	echo "   PostgreSQL for unit tests: OM_TEST_PGCONN=$OM_TEST_PGCONN (given)"
elif ! om__pgbin >/dev/null 2>&1; then
	echo "   no PostgreSQL server binaries (make deps): OM_TEST_PGCONN not set"
elif om_fixture_reap omserver-check-pg && PGDIR=$(om_fixture_mkdir omserver-check-pg) &&
	om_pg_start "$PGDIR" "$PG_PORT"; then
	export OM_TEST_PGCONN="host=$PGDIR/pg port=$PG_PORT user=postgres dbname=postgres"
	echo "   PostgreSQL for unit tests: OM_TEST_PGCONN=\"$OM_TEST_PGCONN\""
else
	echo "   FAIL  throwaway PostgreSQL on port $PG_PORT did not start"
	count unit 0 1 0
	FAILED_NAMES+=("unit/postgres-fixture")
fi

export CMOCKA_MESSAGE_OUTPUT=TAP
export LSAN_OPTIONS="suppressions=$TOP/tests/lsan.supp${LSAN_OPTIONS:+:$LSAN_OPTIONS}"
export ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=1:abort_on_error=0}
export UBSAN_OPTIONS=${UBSAN_OPTIONS:-print_stacktrace=1}
n=0
for bin in build/asan/tests/*_test; do
	[[ -f $bin && -x $bin ]] || continue
	n=$((n + 1))
	name=${bin##*/}
	log=$LOGS/$name.log
	run_logged "$log" "$UNIT_TIMEOUT" 0 "$bin"
	read -r p f s < <(tap_counts "$log")
	why=""
	if ((RC != 0 && f == 0)); then
		# crashed, sanitizer report, timeout or failed group setup
		f=1
		why=" (exit $RC without a failed test: crash, sanitizer or timeout)"
	fi
	count unit "$p" "$f" "$s"
	detail="$p passed, $f failed$( ((s)) && echo ", $s skipped")"
	if ((f)); then
		printf '   FAIL  %-28s %s%s\n' "$name" "$detail" "$why"
		FAILED_NAMES+=("unit/$name")
		show_log "$log"
	else
		printf '   ok    %-28s %s\n' "$name" "$detail"
	fi
done
((n)) || echo "   (no unit test binaries)"
# The plugin SDK, as one case: sdk-install into a temp DESTDIR, the example
# built out of tree with pkg-config only, loaded by the worker's loader.
if [[ -x build/asan/tests/plugins_test ]]; then
	log=$LOGS/plugin_sdk.log
	run_logged "$log" "$UNIT_TIMEOUT" 0 bash tests/plugin_sdk.sh
	if ((RC == 0)); then
		count unit 1 0 0
		printf '   ok    %-28s %s\n' plugin_sdk.sh "SDK install, out-of-tree build, load"
	else
		count unit 0 1 0
		printf '   FAIL  %-28s exit %s\n' plugin_sdk.sh "$RC"
		FAILED_NAMES+=("unit/plugin_sdk.sh")
		show_log "$log"
	fi
fi
unset CMOCKA_MESSAGE_OUTPUT

# --- 2. fuzz ------------------------------------------------------------------------
# libFuzzer (clang, build/fuzz/bin, tests/fuzz/libfuzzer.sh) when it is built and
# clang still links it; else the gcc driver build/asan/fuzz.  OM_FUZZ_ENGINE=
# libfuzzer or driver forces one.  Each harness is one test: first its
# regression inputs (tests/data/fuzz/regress/<name>/, one test per harness),
# then FUZZ_SECONDS of fuzzing, two harnesses at a time (one per core).
engine=${OM_FUZZ_ENGINE:-auto}
lf_bins=()
for bin in build/fuzz/bin/fuzz_*; do
	[[ -f $bin && -x $bin ]] && lf_bins+=("$bin")
done
why_driver=""
if [[ $engine == auto ]]; then
	if ((${#lf_bins[@]} == 0)); then
		engine=driver why_driver="no libFuzzer binaries in build/fuzz/bin (clang missing?)"
	elif ! tests/fuzz/libfuzzer.sh --probe "${FUZZ_CC:-$(command -v clang clang-14 | head -n 1)}"; then
		engine=driver why_driver="clang cannot link -fsanitize=fuzzer (make deps)"
	else
		engine=libfuzzer
	fi
fi

# fuzz_report NAME WHAT LOG: counts the test whose status is in RC.
fuzz_report() {
	if ((RC == 0)); then
		count fuzz 1 0 0
		printf '   ok    %-28s %s\n' "$1" "$2"
	else
		count fuzz 0 1 0
		printf '   FAIL  %-28s %s: exit %s\n' "$1" "$2" "$RC"
		FAILED_NAMES+=("fuzz/$1 ($2)")
		show_log "$3"
	fi
}

# fuzz_what LOG: the summary that tests/fuzz/libfuzzer.sh printed for a harness.
fuzz_what() {
	grep -E '^   (ok|FAIL) ' "$1" | tail -n 1 | sed -E 's/^   (ok|FAIL) +fuzz_[a-z0-9_]+ +//'
}

if [[ $engine == libfuzzer ]]; then
	section fuzz "libFuzzer build/fuzz/bin/fuzz_* for $FUZZ_SECONDS s each, 2 at once"
	if ((${#lf_bins[@]} == 0)); then
		echo "   FAIL  OM_FUZZ_ENGINE=libfuzzer but no build/fuzz/bin/fuzz_* (make fuzz-build)"
		count fuzz 0 1 0
		FAILED_NAMES+=("fuzz/libfuzzer-build")
	fi
	names=()
	for bin in "${lf_bins[@]}"; do names+=("${bin##*/fuzz_}"); done
	# regression inputs: quick, one after the other
	for name in "${names[@]}"; do
		log=$LOGS/fuzz_$name.regress.log
		run_logged "$log" "$FUZZ_TIMEOUT" 0 tests/fuzz/libfuzzer.sh -r "$name"
		if ((RC == 0)) && grep -q "no inputs in" "$log"; then
			# An empty regression set tests nothing: skipped, not passed.
			count fuzz 0 0 1
			printf '   skip  %-28s %s\n' "fuzz_$name" "regress: $(fuzz_what "$log")"
			continue
		fi
		fuzz_report "fuzz_$name" "regress: $(fuzz_what "$log")" "$log"
	done
	# fuzzing, in pairs: both run for the same time
	for ((i = 0; i < ${#names[@]}; i += 2)); do
		pair=("${names[@]:i:2}")
		FUZZ_PIDS=()
		for name in "${pair[@]}"; do
			timeout -k 10 "$FUZZ_TIMEOUT" tests/fuzz/libfuzzer.sh -t "$FUZZ_SECONDS" "$name" \
				</dev/null >"$LOGS/fuzz_$name.log" 2>&1 &
			FUZZ_PIDS+=($!)
		done
		for k in "${!pair[@]}"; do
			RC=0
			wait "${FUZZ_PIDS[k]}" || RC=$?
			log=$LOGS/fuzz_${pair[k]}.log
			((RC == 124)) && echo "*** timed out after $FUZZ_TIMEOUT s" >>"$log"
			fuzz_report "fuzz_${pair[k]}" "$(fuzz_what "$log")" "$log"
		done
		FUZZ_PIDS=()
	done
else
	section fuzz "gcc driver build/asan/fuzz/fuzz_* for $FUZZ_SECONDS s each"
	if [[ -n $why_driver ]]; then
		echo "   libFuzzer not used: $why_driver; running the gcc driver instead"
	else
		echo "   libFuzzer not used: OM_FUZZ_ENGINE=$engine; running the gcc driver instead"
	fi
	export OM_FUZZ_SECONDS=$FUZZ_SECONDS
	n=0
	for bin in build/asan/fuzz/fuzz_*; do
		[[ -f $bin && -x $bin ]] || continue
		n=$((n + 1))
		name=${bin##*/}
		# seeds, then the libFuzzer crash inputs: the driver runs every file first
		args=()
		for d in "tests/data/fuzz/${name#fuzz_}" "tests/data/fuzz/regress/${name#fuzz_}"; do
			[[ -d $d ]] && args+=("$d")
		done
		log=$LOGS/$name.log
		run_logged "$log" "$FUZZ_TIMEOUT" 0 "$bin" "${args[@]}"
		fuzz_report "$name" "${args[*]:-(no seed dir)}" "$log"
	done
	((n)) || echo "   (no fuzz binaries)"
fi

# --- 3. integration ---------------------------------------------------------------
scripts=()
for s in tests/integration/*.sh; do
	[[ -f $s ]] && scripts+=("$s")
done
if [[ ${OM_SKIP_INTEGRATION:-0} == 1 ]]; then
	echo
	echo "== integration: not run (OM_SKIP_INTEGRATION=1)"
else
	section integration "tests/integration/*.sh (real PostgreSQL and sshd)"
	if ((${#scripts[@]} == 0)); then
		echo "   (no integration scripts)"
	elif [[ $(id -u) -ne 0 ]]; then
		echo "   SKIP  ${#scripts[@]} script(s): integration tests need root"
		echo "         (sshd for the test hosts, PostgreSQL run as user postgres)"
		count integration 0 0 "${#scripts[@]}"
	else
		for s in "${scripts[@]}"; do
			name=${s##*/}
			log=$LOGS/integration-${name%.sh}.log
			echo "   $name"
			run_logged "$log" "$INTEGRATION_TIMEOUT" 1 bash "$s"
			read -r p f sk < <(tap_counts "$log")
			if ((RC != 0 && f == 0)); then
				f=1
				echo "   FAIL  $name exited $RC without a 'not ok' line (log: $log)"
			fi
			count integration "$p" "$f" "$sk"
			if ((f)); then
				FAILED_NAMES+=("integration/$name")
				echo "   $name: $p passed, $f failed (log: $log)"
			fi
		done
	fi
fi

# --- summary ----------------------------------------------------------------------------
echo
echo "== summary ($((SECONDS - START)) s)"
for sec in "${SECTIONS[@]}"; do
	line="${SEC_PASS[$sec]} passed, ${SEC_FAIL[$sec]} failed"
	((SEC_SKIP[$sec])) && line+=", ${SEC_SKIP[$sec]} skipped"
	printf '   %-12s %s\n' "$sec:" "$line"
done
for f in "${FAILED_NAMES[@]}"; do echo "   failed: $f"; done
final="$PASS passed, $FAIL failed"
((SKIP)) && final+=", $SKIP skipped"
echo "$final"
if ((FAIL)); then exit 1; fi
exit 0
