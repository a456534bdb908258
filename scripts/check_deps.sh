#!/usr/bin/env bash
# Checks that scripts/deps.sh installs everything the default configure and
# the C sources need, so that `make run` and `make test` work on a fresh
# Debian machine and not only on one that happens to have a package already.
#
#   scripts/check_deps.sh [DEPS_SH]    # DEPS_SH: default scripts/deps.sh
#
# What is needed, and in which profile of deps.sh (`deps.sh --list PROFILE`):
#   - every pkg-config module of a pkg_check_modules() in a CMakeLists.txt,
#     through its .pc file;
#   - every program of a find_program() there;
#   - every header of an `#include <...>` in server/, protocol/, clients/,
#     bench/ and tests/ that is not the project's own, through the file the
#     compiler would find (pkg-config -I directories, then cc's own).
# What tests/ needs belongs to the test profile (Criterion, Debian's
# python3), the rest to the build profile, which `make run` installs. Each
# file is mapped to its Debian package with dpkg-query -S, and that package
# must be listed in the profile, with two allowances: what build-essential
# depends on, recursively, comes with it (the C library's and the
# compiler's headers: Debian's own build-essential convention), and a
# program may come from a package that a listed one depends on directly
# (python3 installs /usr/bin/python3 through python3-minimal).
# Prints one line per missing package, naming the module, header or
# program, where it is used and the package, and exits 1; exits 0 with a
# summary line when everything is listed. Takes well under a second.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
deps=${1:-$root/scripts/deps.sh}
CC=${CC:-cc}
fail() { echo "check_deps: $*" >&2; exit 2; }
command -v dpkg-query >/dev/null || fail "dpkg-query not found (this check needs Debian's dpkg)"
command -v pkg-config >/dev/null || fail "pkg-config is not installed (scripts/deps.sh build installs it)"
command -v "$CC" >/dev/null || fail "no C compiler '$CC' (scripts/deps.sh build installs build-essential)"

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
"$deps" --list build >"$tmp/pkgs.build" || fail "$deps --list build failed"
"$deps" --list test >"$tmp/pkgs.test" || fail "$deps --list test failed"

# The sources scanned: CMake files and C files of the project's own folders
# (not build trees, node_modules or downloaded toolchains).
srcdirs=()
for d in server protocol clients bench tests; do [ -d "$root/$d" ] && srcdirs+=("$root/$d"); done
find "$root/CMakeLists.txt" "${srcdirs[@]}" \( -name node_modules -o -name bin \) -prune \
  -o -type f -name CMakeLists.txt -print | sort >"$tmp/cmake"
find "${srcdirs[@]}" \( -name node_modules -o -name bin \) -prune \
  -o -type f \( -name '*.c' -o -name '*.h' \) -print | sort >"$tmp/csrc"
profile_of() { case "$1" in "$root"/tests/*) echo test ;; *) echo build ;; esac; }

# needs: KIND <tab> NAME <tab> PROFILE <tab> WHERE, one line per use.
: >"$tmp/needs"
# The CMake calls, joined over lines and without comments, as
# "FILE:LINE <tab> COMMAND <tab> ARGUMENTS".
while read -r f; do
  awk -v file="${f#"$root"/}" '
    { sub(/#.*/, "") }
    !open && match($0, /(pkg_check_modules|find_program)[ \t]*\(/) {
      open = 1; line = NR; cmd = substr($0, RSTART, RLENGTH); sub(/[ \t]*\(/, "", cmd)
      text = substr($0, RSTART + RLENGTH); $0 = ""
    }
    open { text = text " " $0
      if (index(text, ")")) { sub(/\).*/, "", text); print file ":" line "\t" cmd "\t" text; open = 0 } }
  ' "$f"
done <"$tmp/cmake" >"$tmp/calls"
keywords=" REQUIRED QUIET IMPORTED_TARGET GLOBAL NO_CMAKE_PATH NO_CMAKE_ENVIRONMENT_PATH "
while IFS=$'\t' read -r where cmd args; do
  prof=$(profile_of "$root/${where%%:*}")
  read -ra a <<<"$args"
  if [ "$cmd" = pkg_check_modules ]; then
    for m in "${a[@]:1}"; do
      case "$keywords" in *" $m "*) continue ;; esac
      m=${m%%[<>=]*}                              # "foo>=1.2" -> foo
      printf 'module\t%s\t%s\t%s\n' "$m" "$prof" "$where" >>"$tmp/needs"
    done
  else
    # find_program(VAR name | NAMES name... [PATHS|HINTS dir...] ...):
    # NAME <tab> dirs to search, space-separated, then PATH unless
    # NO_DEFAULT_PATH.
    names=() dirs=() mode=names default=1
    for t in "${a[@]:1}"; do
      if [[ "$t" =~ ^[A-Z_]+$ ]]; then            # a keyword
        case "$t" in
          NAMES) mode=names ;;
          PATHS|HINTS) mode=dirs ;;
          NO_DEFAULT_PATH) default=0 ;;
          *) mode=skip ;;
        esac
      else
        case $mode in names) names+=("$t") ;; dirs) dirs+=("$t") ;; esac
      fi
    done
    [ "$default" = 1 ] && IFS=: read -ra p <<<"$PATH" && dirs+=("${p[@]}")
    for n in "${names[@]}"; do
      printf 'program\t%s\t%s\t%s\t%s\n' "$n" "$prof" "$where" "${dirs[*]}" >>"$tmp/needs"
    done
  fi
done <"$tmp/calls"
# Headers: the first file using each, per profile.
xargs -d '\n' awk -v root="$root/" '
  match($0, /^[ \t]*#[ \t]*include[ \t]*<[^>]*>/) {
    h = substr($0, RSTART, RLENGTH); sub(/^[^<]*</, "", h); sub(/>$/, "", h)
    f = substr(FILENAME, length(root) + 1); prof = (f ~ /^tests\//) ? "test" : "build"
    if (!seen[h FS prof]++) printf "header\t%s\t%s\t%s\n", h, prof, f
  }' <"$tmp/csrc" >>"$tmp/needs"

# Resolve each need to a file. The project's own headers (<herald/proto.h>)
# are not packages: every tail of a header's path in the tree is one.
declare -A own=()
while read -r f; do
  case "$f" in *.h) t=${f#"$root"/}; while [ -n "$t" ]; do own[$t]=1; [ "$t" = "${t#*/}" ] && break; t=${t#*/}; done ;; esac
done <"$tmp/csrc"
problems=0
problem() { echo "check_deps: $*" >&2; problems=$((problems + 1)); }
incdirs=()
: >"$tmp/files"   # KIND <tab> NAME <tab> PROFILE <tab> WHERE <tab> FILE
while IFS=$'\t' read -r kind name prof where extra; do
  [ "$kind" = module ] || continue
  if ! dir=$(pkg-config --variable=pcfiledir "$name" 2>/dev/null) || [ ! -f "$dir/$name.pc" ]; then
    problem "pkg-config module '$name' ($where) is not installed: its -dev package must be in the $prof profile of scripts/deps.sh"
    continue
  fi
  printf '%s\t%s\t%s\t%s\t%s\n' "$kind" "$name" "$prof" "$where" "$dir/$name.pc" >>"$tmp/files"
  for i in $(pkg-config --cflags-only-I "$name"); do incdirs+=("${i#-I}"); done
done <"$tmp/needs"
while read -r d; do incdirs+=("$d"); done < <("$CC" -xc -E -v /dev/null 2>&1 >/dev/null \
  | sed -n '/^#include <\.\.\.> search starts here:/,/^End of search list/{s/^ \(\/.*\)/\1/p}')
while IFS=$'\t' read -r kind name prof where extra; do
  found=
  case "$kind" in
    module) continue ;;
    program)
      for d in $extra; do [ -x "$d/$name" ] && { found="$d/$name"; break; }; done ;;
    header)
      [ -n "${own[$name]:-}" ] && continue
      for d in "${incdirs[@]}"; do [ -f "$d/$name" ] && { found="$d/$name"; break; }; done ;;
  esac
  if [ -z "$found" ]; then
    problem "$kind '$name' ($where) is not installed: the package with it must be in the $prof profile of scripts/deps.sh"
    continue
  fi
  printf '%s\t%s\t%s\t%s\t%s\n' "$kind" "$name" "$prof" "$where" "$found" >>"$tmp/files"
done <"$tmp/needs"

# Owners: "pkg[:arch][, pkg...]: /path" for each file dpkg knows.
cut -f5 "$tmp/files" | sort -u >"$tmp/paths"
if [ -s "$tmp/paths" ]; then
  xargs -d '\n' dpkg-query -S <"$tmp/paths" 2>/dev/null | grep -v '^diversion by' >"$tmp/owners" || true
fi
# The packages each profile provides: listed, plus build-essential's
# dependency closure when build-essential is listed; for programs, also
# the direct dependencies of listed packages. From dpkg's status (installed
# packages, virtual ones through Provides).
dpkg-query -W -f='${db:Status-Abbrev}\t${Package}\t${Provides}\t${Depends}, ${Pre-Depends}\n' \
  | awk -F'\t' '$1 ~ /^ii/' | cut -f2- >"$tmp/status"
for prof in build test; do
  if [ "$prof" = test ]; then cat "$tmp/pkgs.build" "$tmp/pkgs.test"; else cat "$tmp/pkgs.build"; fi \
    | sort -u >"$tmp/listed.$prof"
  awk -F'\t' -v listedf="$tmp/listed.$prof" -v out="$tmp/allowed.$prof" -v prog="$tmp/allowed_prog.$prof" '
    function names(s, arr) {            # "a (>= 1) | b:any, c" -> a b c
      gsub(/\([^)]*\)|:[a-z0-9]+/, "", s); gsub(/[|,]/, " ", s)
      return split(s, arr, /[ \t]+/)
    }
    { pkg[$1] = 1; dep[$1] = dep[$1] " " $3
      n = names($2, pv); for (i = 1; i <= n; i++) if (pv[i] != "") prov[pv[i]] = prov[pv[i]] " " $1 }
    END {
      while ((getline l < listedf) > 0) { listed[l] = 1; allow[l] = 1; progok[l] = 1 }
      # Direct dependencies of listed packages (for programs).
      for (l in listed) { n = names(dep[l], d); for (i = 1; i <= n; i++) if (d[i] != "") {
        progok[d[i]] = 1; m = split(prov[d[i]], pp, " "); for (j = 1; j <= m; j++) progok[pp[j]] = 1 } }
      # build-essential and everything it pulls in, recursively.
      if ("build-essential" in listed) {
        q[1] = "build-essential"; qn = 1; seen["build-essential"] = 1
        for (k = 1; k <= qn; k++) {
          n = names(dep[q[k]], d)
          for (i = 1; i <= n; i++) {
            if (d[i] == "") continue
            c = d[i] " " prov[d[i]]; m = split(c, cc, " ")
            for (j = 1; j <= m; j++) if ((cc[j] in pkg) && !(cc[j] in seen)) { seen[cc[j]] = 1; q[++qn] = cc[j] }
          }
        }
        for (s in seen) { allow[s] = 1; progok[s] = 1 }
      }
      for (a in allow) print a > out
      for (a in progok) print a > prog
    }' "$tmp/status"
done

# Check each file's owner against its profile, build first, and report
# each missing package once (a package missing from the build profile is
# missing from the test profile too), with what needs it.
declare -A owner=() missing=() uses=()
while IFS=$'\t' read -r path pkgs; do owner[$path]=$pkgs; done < <(awk '
  { i = index($0, ": /"); if (!i) next
    p = substr($0, 1, i - 1); gsub(/:[a-z0-9]+/, "", p); gsub(/, /, " ", p)
    print substr($0, i + 2) "\t" p }' "$tmp/owners")
declare -A ok_build=() ok_test=() okp_build=() okp_test=()
while read -r p; do ok_build[$p]=1; done <"$tmp/allowed.build"
while read -r p; do ok_test[$p]=1; done <"$tmp/allowed.test"
while read -r p; do okp_build[$p]=1; done <"$tmp/allowed_prog.build"
while read -r p; do okp_test[$p]=1; done <"$tmp/allowed_prog.test"
order=()
while IFS=$'\t' read -r kind name prof where file; do
  case $kind in module) what="pkg-config module '$name'" ;; header) what="header <$name>" ;; *) what="program '$name'" ;; esac
  pkgs=${owner[$file]:-}
  if [ -z "$pkgs" ]; then
    problem "$what ($where) is $file, which no Debian package installed: scripts/deps.sh cannot provide it"
    continue
  fi
  good=0
  for p in $pkgs; do
    case "$kind.$prof" in
      program.build) [ -n "${okp_build[$p]:-}" ] && good=1 ;;
      program.test) [ -n "${okp_test[$p]:-}" ] && good=1 ;;
      *.build) [ -n "${ok_build[$p]:-}" ] && good=1 ;;
      *.test) [ -n "${ok_test[$p]:-}" ] && good=1 ;;
    esac
  done
  [ "$good" = 1 ] && continue
  [ "$prof" = test ] && [ -n "${missing[build $pkgs]:-}" ] && continue
  key="$prof $pkgs"
  if [ -z "${missing[$key]:-}" ]; then missing[$key]=0; order+=("$key"); fi
  missing[$key]=$((missing[$key] + 1))
  [ "${missing[$key]}" -le 3 ] && uses[$key]+="${uses[$key]:+, }$what ($where)"
done < <(sort -t$'\t' -s -k3,3 "$tmp/files")
for key in "${order[@]}"; do
  prof=${key%% *} pkgs=${key#* }
  more=""; [ "${missing[$key]}" -gt 3 ] && more=" and $((missing[$key] - 3)) more"
  problem "Debian package ${pkgs// / or } is missing from the $prof profile of scripts/deps.sh (${prof}_pkgs); it provides ${uses[$key]}$more"
done

if [ "$problems" -gt 0 ]; then
  echo "check_deps: $problems problem(s) with $deps" >&2
  exit 1
fi
echo "check_deps: $(grep -c '^module' "$tmp/files") pkg-config modules, $(grep -c '^header' "$tmp/files") headers, $(grep -c '^program' "$tmp/files") programs: each from a package of its deps.sh profile"
