# Sourced by the set-up scripts: one way to install Debian packages that are missing.
#
#   ensure_debian_packages TAG PACKAGE...
#
# Installs the missing ones (apt-get update first) when run as root; otherwise prints the exact
# command to run as root and exits with status 3. TAG prefixes the messages.

ensure_debian_packages() {
    local tag=$1
    shift
    local missing=() pkg
    for pkg in "$@"; do
        dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || missing+=("$pkg")
    done
    (( ${#missing[@]} )) || return 0
    if [[ $(id -u) == 0 ]]; then
        echo "$tag: installing Debian packages: ${missing[*]}" >&2
        apt-get update -qq
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
    else
        echo "$tag: missing Debian packages. Run as root:" >&2
        echo "  apt-get update && apt-get install -y ${missing[*]}" >&2
        exit 3
    fi
}
