#!/usr/bin/env bash
# Runs the libFuzzer harnesses build/fuzz/bin/fuzz_* (make fuzz-build).
#
#   tests/fuzz/libfuzzer.sh [-t SECONDS] [-j JOBS] [NAME...]   fuzz
#   tests/fuzz/libfuzzer.sh -r [NAME...]                       regression inputs only
#   tests/fuzz/libfuzzer.sh --probe [CC]                       exit 0 when CC (default
#                                                              clang) links -fsanitize=fuzzer
#
# NAME is a harness without "fuzz_" (chan, msg, ...); default: every built one.
#
# Fuzz mode runs each harness for SECONDS (default 60), JOBS at once (default
# 1), with -malloc_limit_mb=256 -rss_limit_mb=1024 -timeout=25 and -max_len
# 65536 (more for the harnesses below that need it).  Its working corpus is
# build/fuzz/corpus/NAME/, which keeps what earlier runs found and gets the
# seeds of tests/data/fuzz/NAME/ copied in first: the repository's corpus is
# never written.  A crash, leak, timeout or OOM input lands in
# build/fuzz/crashes/NAME-{crash,leak,timeout,oom}-<sha1>.
#
# Regression mode (-r) runs every file of tests/data/fuzz/regress/NAME/ once,
# without fuzzing: each one crashed a harness once and must not any more.
#
# The libFuzzer output goes to build/fuzz/logs/NAME.log (NAME.regress.log);
# one line per harness is printed, with the log's tail when it failed.
# Exit status: 0 when every harness ran clean, 1 otherwise, 2 on misuse.
#
# Environment: FUZZ_MAX_LEN overrides every -max_len; FUZZ_ARGS adds libFuzzer
# flags (last, so they win), e.g. FUZZ_ARGS='-use_value_profile=1'.
set -uo pipefail

TOP=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
cd "$TOP" || exit 2

BIN=build/fuzz/bin
CORPUS=build/fuzz/corpus
CRASHES=build/fuzz/crashes
LOGS=build/fuzz/logs
SEEDS=tests/data/fuzz
REGRESS=tests/data/fuzz/regress

# -max_len per harness, where 64 KiB cannot reach a limit.
max_len() {
	if [[ -n ${FUZZ_MAX_LEN:-} ]]; then
		echo "$FUZZ_MAX_LEN"
		return
	fi
	case $1 in
	# DATA frames: the harness's plaintext buffer holds 1 MiB
	chan) echo $(((1 << 20) + 4096)) ;;
	# a parameter value or an output chunk may be 64 KiB on its own
	msg | msg_typed) echo 196608 ;;
	*) echo 65536 ;;
	esac
}

common_flags() {
	# shellcheck disable=SC2206 # FUZZ_ARGS is a list of flags
	FLAGS=(-malloc_limit_mb=256 -rss_limit_mb=1024 -timeout=25
		"-max_len=$(max_len "$1")" "-artifact_prefix=$CRASHES/$1-" ${FUZZ_ARGS:-})
}

probe() {
	local cc=${1:-clang} dir rc
	dir=$(mktemp -d) || return 1
	printf '%s\n' '#include <stddef.h>' '#include <stdint.h>' \
		'int LLVMFuzzerTestOneInput(const uint8_t *d, size_t n);' \
		'int LLVMFuzzerTestOneInput(const uint8_t *d, size_t n) { (void)d; (void)n; return 0; }' \
		>"$dir/p.c"
	"$cc" -fsanitize=fuzzer,address,undefined -o "$dir/p" "$dir/p.c" >/dev/null 2>&1
	rc=$?
	rm -rf -- "$dir"
	return $rc
}

# run_child PID: waits for it, passing INT and TERM on; returns its status.
run_child() {
	local pid=$1 rc
	# shellcheck disable=SC2064 # the pid is fixed now
	trap "kill -TERM $pid 2>/dev/null" INT TERM
	wait "$pid"
	rc=$?
	# a signal interrupts wait: wait again for the real status
	while kill -0 "$pid" 2>/dev/null; do
		wait "$pid"
		rc=$?
	done
	trap - INT TERM
	return $rc
}

# show_fail LOG: the end of a failed run, and the artifacts it wrote.
show_fail() {
	local log=$1 marker=$2 name=$3 f
	# the sanitizer's or libFuzzer's report, without the shadow-memory dump
	awk '
		/ERROR: |runtime error: |==WARNING: |^SUMMARY: / { on = 1 }
		/^Shadow bytes around/ { on = 0 }
		/^MS: |Test unit written|^==[0-9]+==ABORTING/ { on = 1 }
		on && n < 80 { print; n++ }
		END { if (n == 0) exit 1 }' "$log" | sed 's/^/    | /' ||
		tail -n 40 "$log" | sed 's/^/    | /'
	while IFS= read -r f; do
		echo "    artifact: $f"
	done < <(find "$CRASHES" -maxdepth 1 -type f -name "$name-*" -newer "$marker" 2>/dev/null | sort)
	echo "    full log: $log"
}

# fuzz_one NAME SECONDS: exit status 0 when clean.
fuzz_one() {
	local name=$1 secs=$2 bin=$BIN/fuzz_$1 log=$LOGS/$1.log rc stats start=$SECONDS
	local marker=$LOGS/.$1.start
	mkdir -p "$CORPUS/$name" "$CRASHES" "$LOGS"
	if [[ -d $SEEDS/$name ]]; then
		cp -p -- "$SEEDS/$name"/* "$CORPUS/$name/" 2>/dev/null
	fi
	common_flags "$name"
	: >"$marker"
	# In the background, so that a TERM to this (sub)shell reaches libFuzzer.
	"$bin" "${FLAGS[@]}" -max_total_time="$secs" -print_final_stats=1 \
		"$CORPUS/$name" </dev/null >"$log" 2>&1 &
	run_child $!
	rc=$?
	# "#123456 DONE cov: 812 ft: 3301 corp: 402/61Kb ..."
	stats=$(grep -E '^#[0-9]+[[:space:]]+DONE' "$log" | tail -n 1 |
		sed -E 's/^#([0-9]+)[[:space:]]+DONE[[:space:]]+cov: ([0-9]+).*corp: ([0-9]+).*/\1 runs, cov \2, corpus \3/')
	if ((rc == 0)); then
		printf '   ok    %-20s %3d s  %s\n' "fuzz_$name" $((SECONDS - start)) "${stats:-?}"
	else
		printf '   FAIL  %-20s exit %d after %d s\n' "fuzz_$name" "$rc" $((SECONDS - start))
		show_fail "$log" "$marker" "$name"
	fi
	rm -f -- "$marker"
	return $((rc != 0))
}

# regress_one NAME: every file of the harness's regression directory, once.
regress_one() {
	local name=$1 bin=$BIN/fuzz_$1 log=$LOGS/$1.regress.log rc f
	local marker=$LOGS/.$1.rstart files=()
	mkdir -p "$CRASHES" "$LOGS"
	while IFS= read -r f; do
		files+=("$f")
	done < <(find "$REGRESS/$name" -maxdepth 1 -type f ! -name '.*' ! -name 'README*' \
		2>/dev/null | sort)
	if ((${#files[@]} == 0)); then
		: >"$log"
		printf '   ok    %-20s no inputs in %s/\n' "fuzz_$name" "$REGRESS/$name"
		return 0
	fi
	common_flags "$name"
	: >"$marker"
	"$bin" "${FLAGS[@]}" "${files[@]}" </dev/null >"$log" 2>&1 &
	run_child $!
	rc=$?
	if ((rc == 0)); then
		printf '   ok    %-20s %d input(s) of %s/\n' "fuzz_$name" "${#files[@]}" "$REGRESS/$name"
	else
		printf '   FAIL  %-20s exit %d on %s/ (%d inputs)\n' "fuzz_$name" "$rc" \
			"$REGRESS/$name" "${#files[@]}"
		grep -E '^Running: ' "$log" | tail -n 1 | sed 's/^/    last input: /'
		show_fail "$log" "$marker" "$name"
	fi
	rm -f -- "$marker"
	return $((rc != 0))
}

usage() {
	sed -n '2,9p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//' >&2
	exit 2
}

mode=fuzz secs=60 jobs=1
while (($#)); do
	case $1 in
	--probe)
		probe "${2:-clang}"
		exit
		;;
	-r) mode=regress ;;
	-t)
		secs=${2:-}
		shift
		;;
	-j)
		jobs=${2:-}
		shift
		;;
	-h | --help) usage ;;
	-*) usage ;;
	*) break ;;
	esac
	shift
done
[[ $secs =~ ^[0-9]+$ && $jobs =~ ^[1-9][0-9]*$ ]] || usage

names=("$@")
if ((${#names[@]} == 0)); then
	for b in "$BIN"/fuzz_*; do
		[[ -f $b && -x $b ]] && names+=("${b##*/fuzz_}")
	done
fi
if ((${#names[@]} == 0)); then
	echo "libfuzzer: no harnesses in $BIN/ (make fuzz-build)" >&2
	exit 2
fi
for n in "${names[@]}"; do
	if [[ ! -x $BIN/fuzz_$n ]]; then
		echo "libfuzzer: no $BIN/fuzz_$n (make fuzz-build)" >&2
		exit 2
	fi
done

failed=()
if [[ $mode == regress ]]; then
	echo "== libFuzzer regression inputs ($REGRESS/<name>/)"
	for n in "${names[@]}"; do
		regress_one "$n" || failed+=("$n")
	done
else
	echo "== libFuzzer: ${#names[@]} harness(es), $secs s each, $jobs at once"
	# The children's status comes back through wait -n -p (bash 5.1).
	declare -A pid_name=()
	trap 'kill -TERM "${!pid_name[@]}" 2>/dev/null; exit 130' INT TERM
	for n in "${names[@]}"; do
		while ((${#pid_name[@]} >= jobs)); do
			wait -n -p done_pid "${!pid_name[@]}"
			rc=$?
			((rc == 0)) || failed+=("${pid_name[$done_pid]}")
			unset "pid_name[$done_pid]"
		done
		fuzz_one "$n" "$secs" &
		pid_name[$!]=$n
	done
	while ((${#pid_name[@]} > 0)); do
		wait -n -p done_pid "${!pid_name[@]}"
		rc=$?
		((rc == 0)) || failed+=("${pid_name[$done_pid]}")
		unset "pid_name[$done_pid]"
	done
fi

if ((${#failed[@]})); then
	echo "libfuzzer: failed: ${failed[*]}"
	exit 1
fi
exit 0
