#!/usr/bin/env bash
# govulncheck over the module (`make lint` runs it): known vulnerabilities
# in the code the binaries really call, not merely in what go.mod lists.
#
# The database is vuln.go.dev when it answers. Where it cannot be reached
# (a machine whose only way out is the Go module proxy), the check says so
# and uses the snapshot of golang.org/x/vulndb that tools/vulndb pins, taken
# from the module proxy; with neither it says so and passes, since a check
# that cannot run has nothing to report.
#
# It fails for a called vulnerability in a module we require (go get the
# fixed version). A called vulnerability in the standard library is fixed by
# a newer Go, not by this repository, so it is printed as a warning naming
# the Go release that fixes it; BOXFLEET_VULNCHECK_STRICT=1 fails on those too.
set -euo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
bin=$(bash tools/build.sh govulncheck)
out=$(mktemp)
errf=$(mktemp)
trap 'rm -f "$out" "$errf"' EXIT

db=https://vuln.go.dev
if ! "$bin" -format json ./... >"$out" 2>"$errf"; then
  if grep -q 'fetching vulnerabilities' "$errf"; then
    echo "vulncheck: $db cannot be reached from this machine ($(grep -m1 -o 'dial tcp.*' "$errf" || echo 'no connection'))."
    if dir=$(bash tools/build.sh vulndb 2>&1 | tail -1) && [ -f "$dir/index/db.json" ]; then
      db="file://$dir"
      echo "vulncheck: using the Go vulnerability database snapshot golang.org/x/vulndb@${dir##*/vulndb-} from the module proxy instead."
      "$bin" -db "$db" -format json ./... >"$out" 2>"$errf" || { cat "$errf" >&2; exit 1; }
    else
      echo "vulncheck: SKIPPED: no vulnerability database reachable either (the vulndb snapshot did not build); nothing was checked." >&2
      exit 0
    fi
  else
    cat "$errf" >&2
    exit 1
  fi
fi

# One line per vulnerability the code calls: id, where, fixed in, summary.
# A finding whose first trace frame names a function is a called one.
report=$(jq -rs '
  (map(select(.osv)) | map({key: .osv.id, value: .osv.summary}) | from_entries) as $sum
  | [.[] | select(.finding) | .finding | select(.trace[0].function)]
  | unique_by(.osv)
  | .[]
  | "\(if .trace[0].module == "stdlib" then "stdlib" else "module" end)\t\(.osv)\t\(.trace[0].module)@\(.trace[0].version)\tfixed in \(.fixed_version // "no release")\t\($sum[.osv] // "")"
' "$out")
stdlib=$(grep -c '^stdlib' <<<"$report" || true)
modules=$(grep -c '^module' <<<"$report" || true)
echo "vulncheck ($db): $modules called vulnerabilities in required modules, $stdlib in the standard library of $(go env GOVERSION)."
[ -n "$report" ] && cut -f2- <<<"$report" | sed 's/^/  /'
if [ "$modules" -gt 0 ]; then
  echo "vulncheck: FAIL: upgrade the modules above (details: $bin -db $db ./...)." >&2
  exit 1
fi
if [ "$stdlib" -gt 0 ]; then
  echo "vulncheck: WARNING: these are fixed in the Go release named after 'fixed in'; build the binaries with it or newer (details: $bin -db $db ./...)." >&2
  [ "${BOXFLEET_VULNCHECK_STRICT:-}" = 1 ] && exit 1
fi
exit 0
