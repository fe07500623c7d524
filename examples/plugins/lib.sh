# Shared by the build scripts of the example plugins: where things are, how
# to install a missing tool, and how to skip work that is already done.
# Sourced, not run. Each build.sh sets LANG_NAME before sourcing it.

set -euo pipefail

# The repository root, the contract, and the folder of this language.
EXAMPLES="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
ROOT="$(cd "$EXAMPLES/../.." && pwd)"
# The WIT is read from the repository at build time, never copied, so every
# build follows the contract the host is built from.
WIT="$ROOT/wit"
HERE="$EXAMPLES/$LANG_NAME"
OUT="$HERE/target"
# Tools that take minutes to build are kept here between runs and clones.
TOOL_CACHE="${TANDEM_TOOL_CACHE:-${XDG_CACHE_HOME:-${HOME:-/tmp}/.cache}/tandem/tools}"

say() { echo "[$LANG_NAME] $*" >&2; }
die() {
    echo "[$LANG_NAME] error: $*" >&2
    exit 1
}
have() { command -v "$1" >/dev/null 2>&1; }

# Installs Debian packages that are not installed yet, or says how to.
apt_install() {
    local missing=()
    for package in "$@"; do
        dpkg-query -W -f='${Status}' "$package" 2>/dev/null | grep -q "install ok installed" ||
            missing+=("$package")
    done
    [ ${#missing[@]} -eq 0 ] && return 0
    if ! have apt-get; then
        die "missing ${missing[*]} and no apt-get here: install them with your package manager"
    fi
    if [ "$(id -u)" -ne 0 ]; then
        die "missing ${missing[*]}: run 'sudo apt-get install ${missing[*]}' and try again"
    fi
    say "installing ${missing[*]} with apt-get"
    apt-get update -qq >&2 || die "apt-get update failed"
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >&2 ||
        die "apt-get install ${missing[*]} failed"
}

# A digest of files and strings: what a build depends on.
digest() {
    local item
    for item in "$@"; do
        if [ -f "$item" ]; then sha256sum "$item"; else echo "$item"; fi
    done | sha256sum | cut -c1-16
}

# Whether OUTPUT was built from exactly these inputs (its stamp matches).
up_to_date() {
    local output="$1" stamp="$2"
    [ -f "$output" ] && [ -f "$output.stamp" ] && [ "$(cat "$output.stamp")" = "$stamp" ]
}

# The inputs every build depends on: the contract and the shared scripts.
wit_files() { find "$WIT" -name '*.wit' | sort; }
