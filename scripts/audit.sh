#!/usr/bin/env bash
# Dependency audit: pip-audit over the hash-locked requirements. Fails on any known vulnerability.
# pip-audit asks PyPI's JSON API for advisories; where that API is out of reach (a machine that reaches
# only a package mirror) it cannot audit a package. A run that audited nothing fails (exit 2): a check
# that cannot fail is noise, so `make audit` is for machines that reach the advisory database, and is
# not a step of `make test`.
set -uo pipefail
cd "$(dirname "$0")/.."
out=$(mktemp)
trap 'rm -f "$out"' EXIT
.venv/bin/pip-audit -r requirements.lock --require-hashes --disable-pip --progress-spinner off -f json -o "$out" \
  --timeout 10 2>/dev/null
rc=$?
.venv/bin/python - "$out" "$rc" <<'PY'
import json, sys
path, rc = sys.argv[1], int(sys.argv[2])
try:
    deps = json.load(open(path))["dependencies"]
except (OSError, ValueError, KeyError):
    print(f"audit: pip-audit produced no report (exit {rc})")
    sys.exit(1)
vulnerable = [d for d in deps if d.get("vulns")]
skipped = [d for d in deps if "skip_reason" in d]
audited = len(deps) - len(skipped)
for d in vulnerable:
    ids = ", ".join(v["id"] for v in d["vulns"])
    print(f"audit: {d['name']} {d['version']}: {ids}")
if vulnerable:
    print(f"audit: FAILED, {len(vulnerable)} vulnerable package(s)")
    sys.exit(1)
if audited == 0:
    print(f"audit: NOT AUDITED: the advisory service is unreachable from here, all {len(deps)} packages skipped "
          f"({skipped[0]['skip_reason'] if skipped else ''})")
    sys.exit(2)
else:
    print(f"audit: no known vulnerabilities in {audited} packages ({len(skipped)} could not be audited)")
PY
