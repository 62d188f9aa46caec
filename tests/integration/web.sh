#!/usr/bin/env bash
# shellcheck disable=SC2317 # helpers are called indirectly, through check
# REST API of the web console (issue 6) with curl against a real platform:
# PostgreSQL, one sshd for 8 hosts, om-master with --http-listen, workers
# bj-1 bj-2 sh-1.  Login and sessions, CSRF, roles, validation, limits,
# security headers, static files, a job run through REST and watched over
# server-sent events.
# Hosts (show, add, import), users (add, password, disable, enable),
# tokens and audit pages, a job's parameters (secrets redacted) and options,
# progress counts in the event stream, the core's field in 400 answers.
# HTTPS on a second master (--tls-cert/--tls-key, a throwaway self-signed
# certificate made with openssl; ports base + 5..7): __Host- Secure cookie,
# HSTS, CSRF Origin https://, no plain HTTP on the TLS port.
# Prints "ok - NAME" / "not ok - NAME"; exits 1 if any case failed.  Needs root.
#
#   OM_IT_BASEPORT   first of the 8 ports (default 26580; HTTP is base + 4, HTTPS base + 7)
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
# The test modules plus vault-args, whose parameter token is secret (case n).
mkdir -p "$T/modules"
cp "$OM_MODULES"/* "$T/modules/"
cat >"$T/modules/vault-args.json" <<'EOF'
{"name": "vault-args", "version": "1.0.0", "description": "echo-args with a secret (tests)",
 "executable": "echo-args",
 "params": [{"name": "user", "type": "string", "required": false, "description": "who"},
            {"name": "token", "type": "string", "required": false, "secret": true,
             "description": "a secret"}]}
EOF
OM_MODULES=$T/modules
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

# More output in one FOLLOW batch than the stream buffer holds once encoded
# (control bytes are valid UTF-8 that JSON writes as \u0001, six times their
# size: 100 chunks of up to 32 KiB come to about 19 MB): every byte still
# arrives, once (regression: the events past the buffer were skipped).
case_big_stream() {
	begin
	local A=(-b "$T/admin.jar" "${JSON[@]}" -H "X-CSRF-Token: $CSRF") id i
	hc o1 "${A[@]}" -d '{"selector":"web-1","module":"shell","params":{"cmd":"head -c 7000000 /dev/zero | tr \\\\000 \\\\001"},"options":{"timeout":60}}' "$URL/api/v1/jobs"
	check "submit: status $ST, want 201" st_is 201
	id=$(jget o1 '["id"]')
	# done first, so the stream gets full batches
	for ((i = 0; i < 300; i++)); do
		[[ $(q "SELECT state FROM jobs WHERE id = ${id:-0}") == done ]] && break
		sleep 0.1
	done
	curl -sS -N --max-time 120 -b "$T/admin.jar" "$URL/api/v1/jobs/$id/events" >"$T/o2.out" 2>"$T/o2.err"
	echo "curl -N $URL/api/v1/jobs/$id/events" >"$T/o2.cmd"
	hc o3 -b "$T/admin.jar" "$URL/api/v1/jobs/$id/output?host=web-1"
	check "output: status $ST" st_is 200
	check "output: not 7000000 bytes" [ "$(stat -c %s "$T/o3.out")" = 7000000 ]
	check "events: no done at the end" grep -q '^event: done' "$T/o2.out"
	check "events: the streamed bytes differ from the stored ones (or an event came twice)" python3 -c '
import base64, json, sys
ids, out = set(), bytearray()
for line in open(sys.argv[1]):
    if line.startswith("data: "):
        d = json.loads(line[6:])
        if d.get("kind") != "output":
            continue
        if d["id"] in ids:
            sys.exit(1)
        ids.add(d["id"])
        out += base64.b64decode(d["b64"]) if "b64" in d else d["text"].encode("utf-8", "surrogateescape")
sys.exit(0 if bytes(out) == open(sys.argv[2], "rb").read() else 1)' "$T/o2.out" "$T/o3.out"
	finish "o. a batch larger than the stream buffer: every byte of 7 MB of control bytes streamed once" o1 o3
}

# NAME PYTHON-EXPR: true of evs, the events of the SSE capture $T/NAME.out as [event, data] pairs
sse_py() {
	python3 -c '
import json, sys
evs, ev, data = [], None, None
for line in open(sys.argv[1]):
    line = line.rstrip("\n")
    if line.startswith("event: "):
        ev = line[7:]
    elif line.startswith("data: "):
        data = json.loads(line[6:])
    elif line == "":
        if ev is not None:
            evs.append([ev, data])
        ev, data = None, None
sys.exit(0 if eval(sys.argv[2]) else 1)' "$T/$1.out" "$2" 2>/dev/null
}

case_hosts() {
	begin
	local A=(-b "$T/admin.jar" "${JSON[@]}" -H "X-CSRF-Token: $CSRF") V vcsrf
	hc k1 "${A[@]}" -d '{"name":"api-1","addr":"api-1.example.com","idc":"bj","port":2222,"user":"ops","groups":["apitest","web"]}' "$URL/api/v1/hosts"
	check "add host: status $ST, want 201" st_is 201
	check "add host: count is not 1" jq_ok k1 'j == {"count": 1}'
	hc k2 -b "$T/admin.jar" "$URL/api/v1/hosts/api-1"
	check "show host: status $ST" st_is 200
	check "show host: fields" jq_ok k2 \
		'j["host"] == {"name": "api-1", "addr": "api-1.example.com", "port": 2222, "user": "ops", "idc": "bj", "groups": ["apitest", "web"], "facts": None, "facts_at_ms": None}'
	hc k3 -b "$T/admin.jar" "$URL/api/v1/hosts/nosuch-9"
	check "show an unknown host: status $ST, want 404" st_is 404
	hc k4 "${A[@]}" -d '{"name":"api-2","addr":"x"}' "$URL/api/v1/hosts"
	check "add without idc: status $ST, want 400 naming idc" jq_ok k4 'j["field"] == "idc"'
	hc k5 "${A[@]}" -d '{"name":"api-2","addr":"-oProxyCommand=x","idc":"bj"}' "$URL/api/v1/hosts"
	check "add with an option as address: want 400 naming addr" jq_ok k5 'j["field"] == "addr"'
	hc k6 "${A[@]}" -d '{"name":"api-2","addr":"x","idc":"bj","port":70000}' "$URL/api/v1/hosts"
	check "add with port 70000: want 400 naming port" jq_ok k6 'j["field"] == "port"'
	hc k7 -b "$T/admin.jar" "${JSON[@]}" -d '{"name":"api-2","addr":"x","idc":"bj"}' "$URL/api/v1/hosts"
	check "add without X-CSRF-Token: status $ST, want 403" st_is 403
	# a viewer: reads hosts, changes none
	login k8 webviewer viewer-pass-1 "$T/viewer2.jar"
	vcsrf=$(jget k8 '["csrf_token"]')
	V=(-b "$T/viewer2.jar" "${JSON[@]}" -H "X-CSRF-Token: $vcsrf")
	hc k9 "${V[@]}" -d '{"name":"api-2","addr":"x","idc":"bj"}' "$URL/api/v1/hosts"
	check "viewer adds a host: status $ST, want 403" st_is 403
	hc k10 -b "$T/viewer2.jar" "$URL/api/v1/hosts/web-1"
	check "viewer shows web-1: status $ST, want 200" st_is 200
	# import: the platform's own inventory (8 hosts, unchanged) through the API
	python3 -c 'import json, sys; print(json.dumps({"text": open(sys.argv[1]).read()}))' \
		"$DIR/inventory.ini" >"$T/k11.json"
	hc k11 "${A[@]}" --data-binary "@$T/k11.json" "$URL/api/v1/hosts/import"
	check "import the demo inventory: status $ST, want 200" st_is 200
	check "import: count is not 8" jq_ok k11 'j == {"count": 8}'
	# more hosts than one core message takes (1000): batches
	hc k12 "${A[@]}" -d '{"text":"[bulk]\nbulk-[1:2500] ansible_host=127.0.0.9\n","default_idc":"sh"}' \
		"$URL/api/v1/hosts/import"
	check "import 2500 hosts: status $ST, want 200" st_is 200
	check "import 2500 hosts: count is not 2500" jq_ok k12 'j["count"] == 2500'
	check "import 2500 hosts: not in the inventory" \
		[ "$(q "SELECT count(*) FROM hosts WHERE name LIKE 'bulk-%' AND idc = 'sh' AND groups = '{bulk}'")" = 2500 ]
	hc k13 -b "$T/admin.jar" "$URL/api/v1/hosts/bulk-2500"
	check "show an imported host: wrong" jq_ok k13 'j["host"]["addr"] == "127.0.0.9" and j["host"]["groups"] == ["bulk"] and j["host"]["idc"] == "sh"'
	hc k14 "${A[@]}" -d '{"text":"[web]\nok-1 ansible_host=1.2.3.4\n[broken\n","default_idc":"bj"}' "$URL/api/v1/hosts/import"
	check "import a broken file: status $ST, want 400 naming text and the line" \
		jq_ok k14 'j["field"] == "text" and "line 3" in j["error"]'
	check "a broken import stored something" [ "$(q "SELECT count(*) FROM hosts WHERE name = 'ok-1'")" = 0 ]
	hc k15 "${A[@]}" -d '{"text":"[web]\nnoidc-1\n"}' "$URL/api/v1/hosts/import"
	check "import a host without IDC: want 400 naming text" jq_ok k15 'j["field"] == "text"'
	hc k16 "${A[@]}" -d '{"default_idc":"bj"}' "$URL/api/v1/hosts/import"
	check "import without text: want 400 naming text" jq_ok k16 'j["field"] == "text"'
	hc k17 "${A[@]}" -d '{"text":"x1\n","default_idc":"b j"}' "$URL/api/v1/hosts/import"
	check "import with a bad default_idc: want 400 naming default_idc" jq_ok k17 'j["field"] == "default_idc"'
	hc k18 "${V[@]}" -d '{"text":"v-1\n","default_idc":"bj"}' "$URL/api/v1/hosts/import"
	check "viewer imports: status $ST, want 403" st_is 403
	check "the refused imports stored something" \
		[ "$(q "SELECT count(*) FROM hosts WHERE name IN ('noidc-1', 'x1', 'v-1', 'api-2')")" = 0 ]
	finish "k. hosts: show (404 unknown), add (201, 400 naming the field, 403 viewer), import (batches, 400 naming text)" \
		k1 k2 k3 k4 k5 k6 k7 k9 k11 k12 k13 k14 k15 k16 k17 k18
}

case_users() {
	begin
	local A=(-b "$T/admin.jar" "${JSON[@]}" -H "X-CSRF-Token: $CSRF") O ocsrf pw=operator-pw-1 pw2=operator-pw-2
	local vcsrf
	vcsrf=$(jget k8 '["csrf_token"]')
	hc l1 "${A[@]}" -d '{"name":"webop","role":"operator","password":"'$pw'","idcs":["sh"]}' "$URL/api/v1/users"
	check "add user: status $ST, want 201" st_is 201
	check "add user: body" jq_ok l1 'j["ok"] and j["name"] == "webop" and j["id"] > 0'
	hc l2 "${A[@]}" -d '{"name":"webop","role":"viewer","password":"'$pw'"}' "$URL/api/v1/users"
	check "add a taken name: status $ST, want 409" st_is 409
	check "add a taken name: field is not name" jq_ok l2 'j["field"] == "name"'
	hc l3 "${A[@]}" -d '{"name":"webop2","role":"root","password":"'$pw'"}' "$URL/api/v1/users"
	check "add with role root: want 400 naming role" jq_ok l3 'j["field"] == "role"'
	hc l4 "${A[@]}" -d '{"name":"webop2","role":"viewer","password":"short-7"}' "$URL/api/v1/users"
	check "add with a short password: want 400 naming password" jq_ok l4 'j["field"] == "password"'
	check "a refusal echoed the password" not grep -q 'short-7' "$T/l4.out"
	hc l5 -b "$T/viewer2.jar" "${JSON[@]}" -H "X-CSRF-Token: $vcsrf" \
		-d '{"name":"webop2","role":"admin","password":"'$pw'"}' "$URL/api/v1/users"
	check "viewer adds a user: status $ST, want 403" st_is 403
	hc l6 -b "$T/admin.jar" "$URL/api/v1/users"
	check "users list: idcs, groups, modules not arrays" \
		jq_ok l6 'all(isinstance(u[k], list) for u in j["users"] for k in ("idcs", "groups", "modules")) and any(u["name"] == "webop" and u["idcs"] == ["sh"] and u["groups"] == [] for u in j["users"])'
	# the operator's scope: IDC sh only
	login l7 webop "$pw" "$T/op.jar"
	check "operator login: status $ST" st_is 200
	ocsrf=$(jget l7 '["csrf_token"]')
	O=(-b "$T/op.jar" "${JSON[@]}" -H "X-CSRF-Token: $ocsrf")
	hc l8 -b "$T/op.jar" "$URL/api/v1/hosts/web-1"
	check "operator of sh shows web-1 (bj): status $ST, want 404" st_is 404
	hc l9 -b "$T/op.jar" "$URL/api/v1/hosts/web-4"
	check "operator of sh shows web-4 (sh): status $ST, want 200" st_is 200
	hc l10 "${O[@]}" -d '{"password":"'$pw2'"}' "$URL/api/v1/users/admin/password"
	check "operator sets admin's password: status $ST, want 403" st_is 403
	hc l11 "${O[@]}" -d '{"password":"tiny"}' "$URL/api/v1/users/webop/password"
	check "a short password: want 400 naming password" jq_ok l11 'j["field"] == "password"'
	hc l12 -b "$T/op.jar" "${JSON[@]}" -d '{"password":"'$pw2'"}' "$URL/api/v1/users/webop/password"
	check "password without X-CSRF-Token: status $ST, want 403" st_is 403
	hc l13 "${O[@]}" -d '{"password":"'$pw2'"}' "$URL/api/v1/users/webop/password"
	check "operator sets its own password: status $ST, want 200" st_is 200
	hc l14 -b "$T/op.jar" "$URL/api/v1/me"
	check "the session of the old password: status $ST, want 401" st_is 401
	login l15 webop "$pw2" "$T/op.jar"
	check "login with the new password: status $ST" st_is 200
	# disable and enable (admin only)
	hc l16 -b "$T/viewer2.jar" -H "X-CSRF-Token: $vcsrf" -X POST "$URL/api/v1/users/webop/disable"
	check "viewer disables a user: status $ST, want 403" st_is 403
	hc l17 -b "$T/admin.jar" -H "X-CSRF-Token: $CSRF" -X POST "$URL/api/v1/users/webop/disable"
	check "disable: status $ST" st_is 200
	hc l18 -b "$T/op.jar" "$URL/api/v1/me"
	check "a disabled user's session: status $ST, want 401" st_is 401
	login l19 webop "$pw2" "$T/op.jar"
	check "a disabled user logs in: status $ST, want 401" st_is 401
	hc l20 -b "$T/admin.jar" -H "X-CSRF-Token: $CSRF" -X POST "$URL/api/v1/users/webop/enable"
	check "enable: status $ST" st_is 200
	login l21 webop "$pw2" "$T/op.jar"
	check "login after enable: status $ST" st_is 200
	hc l22 -b "$T/admin.jar" -H "X-CSRF-Token: $CSRF" -X POST "$URL/api/v1/users/nosuch-9/disable"
	check "disable an unknown user: status $ST, want 404" st_is 404
	hc l23 -b "$T/admin.jar" -X POST "$URL/api/v1/users/webop/enable"
	check "enable without X-CSRF-Token: status $ST, want 403" st_is 403
	check "a password in the master log" not grep -qE "$pw|$pw2" "$DIR/master.log"
	check "a password in the audit log" \
		[ "$(q "SELECT count(*) FROM audit WHERE detail LIKE '%operator-pw%' OR target LIKE '%operator-pw%'")" = 0 ]
	check "audit: no user.add, user.passwd, user.disable and user.enable of webop" \
		[ "$(q "SELECT count(DISTINCT action) FROM audit WHERE target = 'webop' AND outcome = 'ok' AND action IN ('user.add', 'user.passwd', 'user.disable', 'user.enable')")" = 4 ]
	finish "l. users: add (201, 409, 400 naming the field, 403 viewer), scope, own password, disable and enable" \
		l1 l2 l3 l4 l5 l6 l8 l9 l10 l11 l13 l14 l16 l17 l18 l19 l20 l22 l23
}

case_lists() {
	begin
	local last
	hc m1 -b "$T/admin.jar" "$URL/api/v1/tokens"
	check "tokens: scopes not a list" jq_ok m1 'len(j["tokens"]) > 0 and all(isinstance(t["scopes"], list) for t in j["tokens"]) and any(t["scopes"] == ["read", "run", "admin"] for t in j["tokens"])'
	hc m2 -b "$T/admin.jar" "$URL/api/v1/audit?order=desc&limit=5"
	check "audit newest first: status $ST" st_is 200
	check "audit newest first: not 5 rows by falling id" \
		jq_ok m2 'len(j["audit"]) == 5 and [r["id"] for r in j["audit"]] == sorted([r["id"] for r in j["audit"]], reverse=True)'
	last=$(jget m2 '["audit"][-1]["id"]')
	hc m3 -b "$T/admin.jar" "$URL/api/v1/audit?order=desc&limit=5&before=$last"
	check "audit next page: not the 5 rows below $last" \
		jq_ok m3 "[r['id'] for r in j['audit']] == list(range($last - 1, $last - 6, -1))"
	hc m4 -b "$T/admin.jar" "$URL/api/v1/audit?order=sideways"
	check "audit order=sideways: want 400 naming order" jq_ok m4 'j["field"] == "order"'
	hc m5 -b "$T/admin.jar" "$URL/api/v1/audit?limit=3"
	check "audit default order: not oldest first" jq_ok m5 '[r["id"] for r in j["audit"]] == [1, 2, 3]'
	hc m6 -b "$T/viewer2.jar" "$URL/api/v1/audit?order=desc"
	check "viewer reads the audit log: status $ST, want 403" st_is 403
	hc m7 -b "$T/admin.jar" "$URL/api/v1/me"
	check "me: lists not arrays" jq_ok m7 'all(isinstance(j[k], list) for k in ("scopes", "idcs", "groups", "modules"))'
	finish "m. tokens' scopes and users' lists as arrays; the audit log newest first, paged with before" m1 m2 m3 m4 m5 m6 m7
}

case_jobdetail() {
	begin
	local A=(-b "$T/admin.jar" "${JSON[@]}" -H "X-CSRF-Token: $CSRF") id
	hc n1 "${A[@]}" -d '{"selector":"web-1,web-2","module":"vault-args","params":{"user":"bob","token":"hunter2-zz9"},"options":{"timeout":30,"batch":"50%","max_fail":20,"retry_lost":true}}' "$URL/api/v1/jobs"
	check "submit vault-args: status $ST, want 201" st_is 201
	id=$(jget n1 '["id"]')
	curl -sS -N --max-time 60 -b "$T/admin.jar" "$URL/api/v1/jobs/$id/events" >"$T/n2.out" 2>"$T/n2.err"
	echo "curl -N $URL/api/v1/jobs/$id/events" >"$T/n2.cmd"
	check "events: not a counts event first" sse_py n2 'evs[0][0] == "counts" and evs[0][1]["id"] == '"$id"' and evs[0][1]["hosts"] == 2'
	# the last reply is held for its counts, which go out before its events and done
	check "events: the last counts are not 2 ok, or the stream does not end with done" \
		sse_py n2 '[e for e in evs if e[0] == "counts"][-1][1]["counts"]["ok"] == 2 and evs[-1][0] == "done"'
	check "events: counts lack a state" sse_py n2 'all(set(e[1]["counts"]) == {"queued", "dispatched", "running", "ok", "failed", "unreachable", "timeout", "cancelled", "skipped", "lost"} for e in evs if e[0] == "counts")'
	check "events: a counts event carries an id (it is no cursor)" not grep -B1 '^event: counts' "$T/n2.out" | grep -q '^id:'
	hc n3 -b "$T/admin.jar" "$URL/api/v1/jobs/$id"
	check "job show: status $ST" st_is 200
	check "job show: params (the secret redacted)" jq_ok n3 'j["job"]["params"] == {"user": "bob", "token": "********"}'
	check "job show: options" jq_ok n3 \
		'j["job"]["options"] == {"timeout": 30, "forks": 0, "batch": "50%", "max_fail": 20, "check": False, "become": False, "become_user": None, "retry_lost": True}'
	check "job show: the secret is in the answer" not grep -q 'hunter2-zz9' "$T/n3.out"
	oc n4 job show "$id"
	rc_note n4
	check "omctl job show: no params line with the secret redacted" out_line n4 'params:    user=bob token=********'
	check "omctl job show: no options line" out_re n4 '^options: +timeout=30 forks=0 batch=50% max_fail=20 check=no become=no become_user=- retry_lost=yes$'
	check "omctl job show: the secret" not grep -q 'hunter2-zz9' "$T/n4.out"
	oc n5 --json job show "$id"
	rc_note n5
	check "omctl --json job show: params" python3 -c 'import json, sys; j = json.load(open(sys.argv[1])); sys.exit(0 if j["params"] == {"user": "bob", "token": "********"} and j["options"]["batch"] == "50%" else 1)' "$T/n5.out"
	# the core's field of a refusal (ERROR's field), not guessed from its sentence
	hc n6 "${A[@]}" -d '{"selector":"web-1","module":"echo-args","params":{"count":"many"}}' "$URL/api/v1/jobs"
	check "a bad int: status $ST, want 400 naming params.count" jq_ok n6 'j["field"] == "params.count"'
	hc n7 "${A[@]}" -d '{"selector":"web-1","module":"echo-args","params":{"colour":"red"}}' "$URL/api/v1/jobs"
	check "an unknown parameter: want 400 naming params.colour" jq_ok n7 'j["field"] == "params.colour"'
	hc n8 "${A[@]}" -d '{"selector":"web-1","module":"nosuch-mod"}' "$URL/api/v1/jobs"
	check "an unknown module: want 400 naming module" jq_ok n8 'j["field"] == "module"'
	hc n9 "${A[@]}" -d '{"selector":"web-1,(","module":"shell","params":{"cmd":"true"}}' "$URL/api/v1/jobs"
	check "a bad selector: want 400 naming selector" jq_ok n9 'j["field"] == "selector"'
	finish "n. a job's params (secrets redacted) and options in job show; counts in the event stream; the core's field" \
		n1 n2 n3 n4 n5 n6 n7 n8 n9
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
	# quiet: after its host runs (a counts event, within the first FOLLOW wait
	# of 5 s) nothing changes for longer than the 10 s that bring a ping
	hc i1 "${A[@]}" -d '{"selector":"web-3","module":"shell","params":{"cmd":"sleep 18; echo late"}}' "$URL/api/v1/jobs"
	check "submit: status $ST, want 201" st_is 201
	id=$(jget i1 '["id"]')
	curl -sS -N --max-time 40 -H "Authorization: Bearer $OM_TOKEN" "$URL/api/v1/jobs/$id/events" >"$T/i2.out" 2>"$T/i2.err"
	echo "curl -N $URL/api/v1/jobs/$id/events (bearer)" >"$T/i2.cmd"
	check "a quiet stream got no ': ping' comment" grep -q '^: ping' "$T/i2.out"
	check "the stream missed the late output" grep -q '"text":"late\\n"' "$T/i2.out"
	check "the stream did not end with done" grep -q '^event: done' "$T/i2.out"
	check "the stream never counted the host running" \
		sse_py i2 'any(e[1]["counts"]["running"] == 1 for e in evs if e[0] == "counts")'
	check "the stream repeated counts that had not changed" \
		sse_py i2 'all(a[1] != b[1] for a, b in zip([e for e in evs if e[0] == "counts"], [e for e in evs if e[0] == "counts"][1:]))'
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

# HTTPS: a second master on the same database serving the console and the API
# over TLS (--tls-cert/--tls-key) with a throwaway self-signed certificate for
# 127.0.0.1; its ports are base + 5 (workers), + 6 (clients), + 7 (HTTPS).
case_https() {
	begin
	local wport2=$((BASE + 5)) cport2=$((BASE + 6)) tport=$((BASE + 7)) i pid csrf
	local cert=$T/tls-cert.pem key=$T/tls-key.pem jar=$T/tls.jar turl
	local name="p. HTTPS: login sets a __Host- Secure cookie, HSTS, /me with it, CSRF Origin https, no plain HTTP"
	turl=https://127.0.0.1:$tport
	local S=(--cacert "$cert")
	DIAG_FILES=("$T/p0.out" "$DIR/master2.log")
	if ! (umask 077 && openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes \
		-keyout "$key" -out "$cert" -days 2 -subj /CN=127.0.0.1 \
		-addext subjectAltName=IP:127.0.0.1 </dev/null >"$T/p0.out" 2>&1); then
		ERRS+=("openssl req could not make a certificate")
		finish "$name"
		DIAG_FILES=()
		return
	fi
	if ! OM_MASTER_ARGS="--pending-timeout 3 --http-listen 127.0.0.1:$tport --tls-cert $cert --tls-key $key" \
		om_master_start "$DIR" "$wport2" "$cport2" 2 2>>"$T/p0.out"; then
		ERRS+=("the second master did not start")
	fi
	for ((i = 0; i < 100; i++)); do
		om__port_open 127.0.0.1 "$tport" && break
		sleep 0.1
	done
	if ! om__port_open 127.0.0.1 "$tport"; then
		ERRS+=("nothing listens on https port $tport")
	else
		# login: 200, the cookie is __Host-om_session, Secure; HSTS on the answer
		hc p1 "${S[@]}" -c "$jar" "${JSON[@]}" -d "{\"user\":\"admin\",\"password\":\"$ADMIN_PW\"}" "$turl/api/v1/login"
		check "login over HTTPS: status $ST, want 200" st_is 200
		check "login over HTTPS: Set-Cookie is not '__Host-om_session=oms_...; Path=/; HttpOnly; SameSite=Strict; Secure'" \
			grep -qE $'^Set-Cookie: __Host-om_session=oms_[0-9a-f]{64}; Path=/; HttpOnly; SameSite=Strict; Secure\r?$' "$T/p1.hdr"
		check "login over HTTPS: a cookie without the __Host- prefix was set" \
			not grep -qiE '^Set-Cookie: om_session=' "$T/p1.hdr"
		check "login over HTTPS: no Strict-Transport-Security header" \
			grep -qiE '^Strict-Transport-Security: max-age=[1-9][0-9]*' "$T/p1.hdr"
		check "login over HTTPS: no Content-Security-Policy" hdr p1 "^Content-Security-Policy: default-src 'self'"
		csrf=$(jget p1 '["csrf_token"]')
		# the session works over HTTPS (curl sends a __Host- cookie only to https)
		hc p2 "${S[@]}" -b "$jar" "$turl/api/v1/me"
		check "/me with the HTTPS session: status $ST, want 200" st_is 200
		check "/me with the HTTPS session: wrong user or CSRF token" \
			jq_ok p2 "j['user'] == 'admin' and j['csrf_token'] == '$csrf'"
		check "/me over HTTPS: no Strict-Transport-Security header" \
			grep -qiE '^Strict-Transport-Security: max-age=[1-9]' "$T/p2.hdr"
		# the page itself, over TLS
		hc p3 "${S[@]}" "$turl/"
		check "GET / over HTTPS: status $ST, want 200" st_is 200
		# the certificate is checked: without --cacert curl refuses it
		hc p4 "$turl/api/v1/me"
		check "an unverified certificate was accepted (status $ST)" st_is 000
		# plain HTTP to the TLS port gets no HTTP answer
		hc p5 --max-time 5 "http://127.0.0.1:$tport/api/v1/me"
		check "plain HTTP to the HTTPS port answered status $ST" st_is 000
		# a change from a page of this server: Origin is https://HOST, not http://HOST
		hc p7 "${S[@]}" -b "$jar" -H "X-CSRF-Token: $csrf" -H "Origin: http://127.0.0.1:$tport" -X POST "$turl/api/v1/logout"
		check "logout with Origin http:// on the HTTPS server: status $ST, want 403" st_is 403
		hc p8 "${S[@]}" -b "$jar" -H "X-CSRF-Token: $csrf" -H "Origin: https://127.0.0.1:$tport" -X POST "$turl/api/v1/logout"
		check "logout with Origin https://: status $ST, want 200" st_is 200
		check "logout over HTTPS: the __Host- cookie is not cleared (Secure, Max-Age=0)" \
			grep -qE '^Set-Cookie: __Host-om_session=; Path=/; HttpOnly; SameSite=Strict; Secure; Max-Age=0' "$T/p8.hdr"
		hc p9 "${S[@]}" -b "$jar" "$turl/api/v1/me"
		check "/me after logout over HTTPS: status $ST, want 401" st_is 401
	fi
	# stop the second master (by its pid file), the first one serves on
	if pid=$(om__pidfile_ours "$DIR/master2.pid" "$DIR"); then
		om__terminate 5 "$DIR" "$pid"
	fi
	check "the second master still runs after TERM" not alive "$DIR/master2.pid"
	check "nothing may listen on $tport any more" not om__port_open 127.0.0.1 "$tport"
	check "master2 log: a panic or sanitizer report" not grep -qiE 'panic|fatal error|AddressSanitizer' "$DIR/master2.log"
	finish "$name" p1 p2 p3 p4 p5 p7 p8 p9
	DIAG_FILES=()
}

case_login
case_headers
case_csrf
case_validation
case_roles
case_static
case_job
case_hosts
case_users
case_lists
case_jobdetail
case_big_stream
case_logout
case_https
case_ratelimit
case_stream

echo "# $NPASS passed, $NFAIL failed"
((NFAIL == 0))
