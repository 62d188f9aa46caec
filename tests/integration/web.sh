#!/usr/bin/env bash
# shellcheck disable=SC2317 # helpers are called indirectly, through check
# REST API of the web console (issue 6) with curl against a real platform:
# PostgreSQL, one sshd for 8 hosts, om-master with --http-listen, workers
# bj-1 bj-2 sh-1.  Login and sessions, CSRF, roles, validation, limits,
# security headers, static files, a job run through REST and watched over
# server-sent events.
# Prints "ok - NAME" / "not ok - NAME"; exits 1 if any case failed.  Needs root.
#
#   OM_IT_BASEPORT   first of the 5 ports (default 26580; HTTP is base + 4)
#   OM_IT_KEEP=1     keep the platform directory after a failure
set -uo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source=tests/fixture/lib.sh
. "$HERE/../fixture/lib.sh"

IT_NAME=omserver-itw
OM_IT_BASEPORT=${OM_IT_BASEPORT:-26580}
HPORT=$((OM_IT_BASEPORT + 4))
OM_MASTER_ARGS="--pending-timeout 3 --http-listen 127.0.0.1:$HPORT --http-max-body 65536"
# shellcheck source=tests/fixture/itlib.sh
. "$HERE/../fixture/itlib.sh"

URL=http://127.0.0.1:$HPORT
if ! command -v curl >/dev/null; then
	echo "not ok - curl is needed (make deps)"
	exit 1
fi
if ! om_platform_start "$DIR" "$BASE" 2>"$T/start.err"; then
	echo "not ok - platform start"
	sed '/^#/!s/^/# /' "$T/start.err"
	exit 1
fi
echo "ok - platform start (pg $BASE, sshd $SSHPORT, master $WPORT/$CPORT, http $HPORT)"
NPASS=$((NPASS + 1))
# shellcheck disable=SC1091
. "$DIR/env"
ADMIN_PW=$(cat "$DIR/admin.password")

# hc NAME CURL-ARGS...: body in $T/NAME.out, headers in $T/NAME.hdr, status in ST
hc() {
	local name=$1
	shift
	ST=$(curl -sS --max-time 30 -o "$T/$name.out" -D "$T/$name.hdr" -w '%{http_code}' "$@" 2>"$T/$name.err")
	echo "curl $*" >"$T/$name.cmd"
	echo "$ST" >"$T/$name.rc"
}
# NAME PYTHON-EXPR: true of the JSON body j
jq_ok() {
	python3 -c 'import json, sys; j = json.load(open(sys.argv[1])); sys.exit(0 if eval(sys.argv[2]) else 1)' \
		"$T/$1.out" "$2" 2>/dev/null
}
jget() { python3 -c 'import json, sys; print(json.load(open(sys.argv[1]))'"$2"')' "$T/$1.out" 2>/dev/null; }
hdr() { grep -qi -- "$2" "$T/$1.hdr"; }
st_is() { [[ $ST == "$1" ]]; }
not() { ! "$@"; }
JSON=(-H 'Content-Type: application/json')

# cookie jar and CSRF token of a user's session
login() { # NAME USER PASSWORD JAR
	hc "$1" -c "$4" "${JSON[@]}" -d "{\"user\":\"$2\",\"password\":\"$3\"}" "$URL/api/v1/login"
}

case_login() {
	begin
	login a1 admin "$ADMIN_PW" "$T/admin.jar"
	check "login: status $ST, want 200" st_is 200
	check "login: no HttpOnly SameSite=Strict om_session cookie" \
		hdr a1 '^Set-Cookie: om_session=oms_[0-9a-f]\{64\}; Path=/; HttpOnly; SameSite=Strict'
	check "login: no csrf_token in the body" jq_ok a1 'j["csrf_token"].startswith("omc_") and j["user"] == "admin"'
	CSRF=$(jget a1 '["csrf_token"]')
	login a2 admin wrong-password "$T/bad.jar"
	check "bad password: status $ST, want 401" st_is 401
	check "bad password: no JSON error" jq_ok a2 '"error" in j'
	check "bad password: a cookie was set" not hdr a2 '^Set-Cookie: om_session=oms'
	hc a3 -b "$T/admin.jar" "$URL/api/v1/me"
	check "me: status $ST, want 200" st_is 200
	check "me: wrong user, role or CSRF token" \
		jq_ok a3 "j['user'] == 'admin' and j['role'] == 'admin' and j['csrf_token'] == '$CSRF' and 'run' in j['scopes']"
	hc a4 "$URL/api/v1/me"
	check "me without a session: status $ST, want 401" st_is 401
	hc a5 "${JSON[@]}" -d '{"user":"admin"}' "$URL/api/v1/login"
	check "login without password: status $ST, want 400 naming password" \
		jq_ok a5 'j.get("field") == "password"'
	check "audit has no web login row" \
		grep -q 'login' <<<"$(q "SELECT action FROM audit WHERE source LIKE '127.0.0.1:%' AND target = 'web' AND outcome = 'ok'")"
	finish "a. login (cookie, CSRF token), bad password 401, /me" a1 a2 a3 a4 a5
}

case_headers() {
	begin
	local n
	hc b1 "$URL/api/v1/nope"
	check "unknown route: status $ST, want 404" st_is 404
	hc b2 -X DELETE -H "Authorization: Bearer $OM_TOKEN" "$URL/api/v1/jobs"
	check "wrong method: status $ST, want 405" st_is 405
	for n in a3 b1 b2; do
		check "$n: no Content-Security-Policy" hdr $n "^Content-Security-Policy: default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; object-src 'none'; base-uri 'none'; frame-ancestors 'none'; form-action 'self'"
		check "$n: no X-Content-Type-Options" hdr $n '^X-Content-Type-Options: nosniff'
		check "$n: no Referrer-Policy" hdr $n '^Referrer-Policy: no-referrer'
		check "$n: no X-Frame-Options" hdr $n '^X-Frame-Options: DENY'
	done
	finish "b. security headers on every answer, 404 unknown route, 405 wrong method" b1 b2
}

case_csrf() {
	begin
	local body='{"selector":"web-1","module":"shell","params":{"cmd":"true"}}'
	hc c1 -b "$T/admin.jar" "${JSON[@]}" -d "$body" "$URL/api/v1/jobs"
	check "submit without X-CSRF-Token: status $ST, want 403" st_is 403
	hc c2 -b "$T/admin.jar" "${JSON[@]}" -H "X-CSRF-Token: omc_0000" -d "$body" "$URL/api/v1/jobs"
	check "submit with a wrong X-CSRF-Token: status $ST, want 403" st_is 403
	hc c3 -b "$T/admin.jar" "${JSON[@]}" -H "X-CSRF-Token: $CSRF" -H "Origin: http://evil.example" \
		-d "$body" "$URL/api/v1/jobs"
	check "submit from a foreign Origin: status $ST, want 403" st_is 403
	finish "c. CSRF: no token, wrong token, foreign Origin all 403" c1 c2 c3
}

case_validation() {
	begin
	local A=(-b "$T/admin.jar" "${JSON[@]}" -H "X-CSRF-Token: $CSRF")
	hc d1 "${A[@]}" -d '{"module":"shell","params":{"cmd":"true"}}' "$URL/api/v1/jobs"
	check "no selector: status $ST, want 400" st_is 400
	check "no selector: field is not selector" jq_ok d1 'j["field"] == "selector"'
	hc d2 "${A[@]}" -d '{"selector":"web-1","module":"shell","params":{"cmd":"true"},"options":{"timeout":"x"}}' "$URL/api/v1/jobs"
	check "bad timeout: field is not options.timeout" jq_ok d2 'j["field"] == "options.timeout"'
	hc d3 "${A[@]}" -d '{"selector":"web-1","module":"shell","params":{}}' "$URL/api/v1/jobs"
	check "missing cmd: status $ST, want 400" st_is 400
	check "missing cmd: field is not params.cmd" jq_ok d3 'j["field"] == "params.cmd"'
	hc d4 "${A[@]}" -d '{"selector":"web-1",' "$URL/api/v1/jobs"
	check "broken JSON: status $ST, want 400" st_is 400
	hc d5 "${A[@]}" -d '{"selector":"nosuchhost-9","module":"shell","params":{"cmd":"true"}}' "$URL/api/v1/jobs"
	check "selector matching nothing: status $ST, want 400 naming selector" jq_ok d5 'j["field"] == "selector"'
	head -c 200000 /dev/zero | tr '\0' 'a' >"$T/big.json"
	hc d6 "${A[@]}" --data-binary "@$T/big.json" "$URL/api/v1/jobs"
	check "200 kB body (limit 64 KiB): status $ST, want 413" st_is 413
	hc d7 "${A[@]}" -H 'Transfer-Encoding: chunked' --data-binary "@$T/big.json" "$URL/api/v1/jobs"
	check "200 kB chunked body: status $ST, want 413" st_is 413
	finish "d. validation 400 naming the field, 413 over the body limit" d1 d2 d3 d4 d5 d6 d7
}

case_roles() {
	begin
	printf 'viewer-pass-1\n' >"$T/viewer.pw"
	oc e0 users add webviewer --role viewer --password-file "$T/viewer.pw"
	rc_note e0
	check "users add webviewer: exit $RC" [ "$RC" -eq 0 ]
	login e1 webviewer viewer-pass-1 "$T/viewer.jar"
	check "viewer login: status $ST" st_is 200
	local vcsrf
	vcsrf=$(jget e1 '["csrf_token"]')
	hc e2 -b "$T/viewer.jar" "$URL/api/v1/jobs"
	check "viewer lists jobs: status $ST, want 200" st_is 200
	hc e3 -b "$T/viewer.jar" "${JSON[@]}" -H "X-CSRF-Token: $vcsrf" \
		-d '{"selector":"web-1","module":"shell","params":{"cmd":"true"}}' "$URL/api/v1/jobs"
	check "viewer submits: status $ST, want 403" st_is 403
	hc e4 -b "$T/viewer.jar" "$URL/api/v1/users"
	check "viewer lists users: status $ST, want 403" st_is 403
	hc e5 -H "Authorization: Bearer $OM_TOKEN" "$URL/api/v1/workers"
	check "bearer token lists workers: status $ST, want 200" st_is 200
	check "bearer: not 3 workers" jq_ok e5 'len(j["workers"]) == 3'
	hc e6 -H "Authorization: Bearer omt_$(printf '0%.0s' {1..64})" "$URL/api/v1/workers"
	check "unknown bearer token: status $ST, want 401" st_is 401
	hc e7 -H "Authorization: Bearer $OM_TOKEN" "$URL/api/v1/modules/shell"
	check "module shell: no cmd in its schema" jq_ok e7 'any(p["name"] == "cmd" for p in j["schema"])'
	finish "e. roles: viewer reads but may not submit (403); bearer token works, bad one 401" e0 e1 e2 e3 e4 e5 e6 e7
}

case_static() {
	begin
	hc f1 "$URL/api/v1/openapi.json"
	check "openapi.json: status $ST" st_is 200
	check "openapi.json: not OpenAPI 3 with /jobs" jq_ok f1 'j["openapi"].startswith("3.") and "/jobs" in j["paths"]'
	check "openapi.json: no security headers" hdr f1 '^X-Frame-Options: DENY'
	hc f2 --path-as-is "$URL/../../../etc/passwd"
	check "/../../../etc/passwd: status $ST, want 404 or 400" [ "$ST" = 404 -o "$ST" = 400 ]
	hc f3 --path-as-is "$URL/%2e%2e/%2e%2e/etc/passwd"
	check "%2e%2e traversal: status $ST, want 404 or 400" [ "$ST" = 404 -o "$ST" = 400 ]
	hc f4 --path-as-is "$URL/openapi.json%00.txt"
	check "NUL in the path: status $ST, want 404 or 400" [ "$ST" = 404 -o "$ST" = 400 ]
	check "a traversal served /etc/passwd" not grep -q 'root:' "$T/f2.out" "$T/f3.out"
	hc f5 "$URL/openapi.json"
	check "/openapi.json as a static file: status $ST" st_is 200
	check "/openapi.json: Content-Type" hdr f5 '^Content-Type: application/json'
	finish "f. static files: OpenAPI served, traversal and NUL refused" f1 f2 f3 f4 f5
}

case_job() {
	begin
	local A=(-b "$T/admin.jar" "${JSON[@]}" -H "X-CSRF-Token: $CSRF") id n h
	hc g1 "${A[@]}" -d '{"selector":"web-1,web-2,web-4","module":"shell","params":{"cmd":"echo line-one; echo line-two; hostname >/dev/null"},"options":{"timeout":60}}' "$URL/api/v1/jobs"
	check "submit: status $ST, want 201" st_is 201
	id=$(jget g1 '["id"]')
	check "submit: not 3 hosts" jq_ok g1 'j["hosts"] == 3'
	# the stream from the start: every event, ends with "event: done"
	curl -sS -N --max-time 60 -b "$T/admin.jar" "$URL/api/v1/jobs/$id/events" >"$T/g2.out" 2>"$T/g2.err"
	echo "curl -N $URL/api/v1/jobs/$id/events" >"$T/g2.cmd"
	check "events: no event: done at the end" grep -q '^event: done' "$T/g2.out"
	n=$(grep -c '"text":"line-one\\n' "$T/g2.out")
	check "events: $n line-one outputs, want 3" [ "$n" -eq 3 ]
	n=$(grep -c '^event: state' "$T/g2.out")
	check "events: $n state events, want 3" [ "$n" -eq 3 ]
	check "events: ids are not event cursors" grep -qE '^id: [0-9]+$' "$T/g2.out"
	hc g3 -b "$T/admin.jar" "$URL/api/v1/jobs/$id"
	check "job show: status $ST" st_is 200
	check "job show: not every host ok" \
		jq_ok g3 'len(j["hosts"]) == 3 and all(h["state"] == "ok" and h["exit"] == 0 for h in j["hosts"]) and j["job"]["counts"]["ok"] == 3'
	hc g4 -b "$T/admin.jar" "$URL/api/v1/jobs/$id/output?host=web-4"
	check "output: status $ST" st_is 200
	check "output: not the host's bytes" cmp -s "$T/g4.out" <(printf 'line-one\nline-two\n')
	check "output: not octet-stream" hdr g4 '^Content-Type: application/octet-stream'
	hc g5 -b "$T/admin.jar" "$URL/api/v1/jobs/$id/output"
	check "output without host: want 400 naming host" jq_ok g5 'j["field"] == "host"'
	# resume after the last event: only done
	h=$(grep -E '^id: ' "$T/g2.out" | tail -n 2 | head -n 1 | cut -d' ' -f2)
	curl -sS -N --max-time 30 -b "$T/admin.jar" -H "Last-Event-ID: $h" "$URL/api/v1/jobs/$id/events" >"$T/g6.out" 2>"$T/g6.err"
	echo "curl -N -H Last-Event-ID: $h" >"$T/g6.cmd"
	check "resume: output lines repeated" not grep -q 'line-one' "$T/g6.out"
	check "resume: no done" grep -q '^event: done' "$T/g6.out"
	hc g7 -b "$T/admin.jar" "$URL/api/v1/jobs?limit=5"
	check "jobs list: job $id missing" jq_ok g7 "any(x['id'] == $id for x in j['jobs'])"
	hc g8 -b "$T/admin.jar" "$URL/api/v1/jobs/999999"
	check "unknown job: status $ST, want 404" st_is 404
	check "audit: no job.submit by user 'admin' from the web client" \
		grep -q 'job.submit' <<<"$(q "SELECT action FROM audit WHERE actor = 'user ''admin''' AND action = 'job.submit' AND source LIKE '127.0.0.1:%'")"
	finish "g. a job run through REST: SSE output and done, every host ok, raw output" g1 g2 g3 g4 g5 g6 g7 g8
}

case_logout() {
	begin
	hc h1 -b "$T/admin.jar" -X POST "$URL/api/v1/logout"
	check "logout without CSRF token: status $ST, want 403" st_is 403
	hc h2 -b "$T/admin.jar" -H "X-CSRF-Token: $CSRF" -X POST "$URL/api/v1/logout"
	check "logout: status $ST, want 200" st_is 200
	check "logout: cookie not cleared" hdr h2 '^Set-Cookie: om_session=;.*Max-Age=0'
	hc h3 -b "$T/admin.jar" "$URL/api/v1/me"
	check "the old cookie after logout: status $ST, want 401" st_is 401
	check "no web_sessions row left for admin" \
		[ "$(q "SELECT count(*) FROM web_sessions s JOIN users u ON u.id = s.user_id WHERE u.name = 'admin'")" = 0 ]
	finish "h. logout ends the session (the old cookie is refused)" h1 h2 h3
}

case_stream() {
	begin
	local A=(-H "Authorization: Bearer $OM_TOKEN" "${JSON[@]}") id mpid i
	hc i1 "${A[@]}" -d '{"selector":"web-3","module":"shell","params":{"cmd":"sleep 12; echo late"}}' "$URL/api/v1/jobs"
	check "submit: status $ST, want 201" st_is 201
	id=$(jget i1 '["id"]')
	curl -sS -N --max-time 40 -H "Authorization: Bearer $OM_TOKEN" "$URL/api/v1/jobs/$id/events" >"$T/i2.out" 2>"$T/i2.err"
	echo "curl -N $URL/api/v1/jobs/$id/events (bearer)" >"$T/i2.cmd"
	check "a quiet stream got no ': ping' comment" grep -q '^: ping' "$T/i2.out"
	check "the stream missed the late output" grep -q '"text":"late\\n"' "$T/i2.out"
	check "the stream did not end with done" grep -q '^event: done' "$T/i2.out"
	# a stream open while the master stops: it ends, the master exits in time
	hc i3 "${A[@]}" -d '{"selector":"web-3","module":"shell","params":{"cmd":"sleep 30"}}' "$URL/api/v1/jobs"
	id=$(jget i3 '["id"]')
	curl -sS -N --max-time 40 -H "Authorization: Bearer $OM_TOKEN" "$URL/api/v1/jobs/$id/events" >"$T/i4.out" 2>"$T/i4.err" &
	local cpid=$!
	sleep 1
	mpid=$(cat "$DIR/master.pid")
	kill -TERM "$mpid"
	for ((i = 0; i < 50; i++)); do
		kill -0 "$mpid" 2>/dev/null || break
		sleep 0.1
	done
	check "the master did not stop within 5 s with a stream open" not kill -0 "$mpid" 2>/dev/null
	for ((i = 0; i < 50; i++)); do
		kill -0 "$cpid" 2>/dev/null || break
		sleep 0.1
	done
	check "the event stream did not end when the master stopped" not kill -0 "$cpid" 2>/dev/null
	kill "$cpid" 2>/dev/null
	wait "$cpid" 2>/dev/null
	check "master log: a panic or sanitizer report" not grep -qiE 'panic|fatal error|AddressSanitizer|shutdown did not finish' "$DIR/master.log"
	check "master log: no 'stopping'" grep -q 'stopping' "$DIR/master.log"
	finish "i. SSE heartbeat on a quiet job; the master stops cleanly with a stream open" i1 i2 i3
}

case_ratelimit() {
	begin
	local i n429=0
	for ((i = 0; i < 14; i++)); do
		login j1 admin "wrong-$i" "$T/bad.jar"
		[[ $ST == 429 ]] && n429=$((n429 + 1))
	done
	check "14 quick bad logins: $n429 refused with 429, want some" [ "$n429" -ge 1 ]
	check "429: no Retry-After" hdr j1 '^Retry-After: '
	check "audit: no refused web login" \
		grep -q 'login' <<<"$(q "SELECT action FROM audit WHERE action = 'login' AND target = 'web' AND outcome = 'refused'")"
	finish "j. login attempts are rate-limited per address (429, Retry-After) and refusals audited" j1
}

case_login
case_headers
case_csrf
case_validation
case_roles
case_static
case_job
case_logout
case_ratelimit
case_stream

echo "# $NPASS passed, $NFAIL failed"
((NFAIL == 0))
