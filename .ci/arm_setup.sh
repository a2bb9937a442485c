#!/usr/bin/env bash
# Emulated aarch64 (Raspberry Pi 4 class) environment for running a sensi-edge device bundle in CI.
#
#   .ci/arm_setup.sh [prepare]                 build the cache once; later calls only check it
#   .ci/arm_setup.sh run BUNDLE_DIR [ARGS...]  python3.11 run.py ARGS inside the emulated rootfs;
#                                              prints its output, returns its exit code, and copies the
#                                              files it wrote (report.json) back into BUNDLE_DIR
#   .ci/arm_setup.sh python [ARGS...]          python3.11 ARGS inside the emulated rootfs (cwd /)
#
# The cache (${SENSI_EDGE_ARM_CACHE:-/var/cache/sensi-edge-arm}) holds an arm64 Debian bookworm rootfs
# (debootstrap --foreign, first stage only; the .debs are unpacked, never configured, so no binfmt_misc
# is needed), qemu-aarch64-static copied into it, and aarch64 wheels of onnxruntime + numpy and their
# dependencies unpacked into /opt/pylib-<hash> (used through PYTHONPATH). Programs run as
#   unshare --root=ROOTFS --wd=DIR /usr/bin/qemu-aarch64-static -cpu cortex-a72 /usr/bin/python3.11 ...
# i.e. chrooted, so the guest sees the rootfs' regular-file /proc/cpuinfo (onnxruntime segfaults under
# qemu-user when it parses the x86 host's one) and /sys/devices/system/cpu/{present,possible,online}.
# Emulated timings say nothing about a real board: the cpuinfo names the emulation so reports show it.
#
# Markers: ROOTFS/.sensi-edge-complete and ROOTFS/opt/pylib-<hash>/.sensi-edge-complete are written last,
# and each part is built under a *.partial name and renamed, so a half-built cache is never used.
#
# Environment (all optional):
#   SENSI_EDGE_ARM_CACHE        cache folder (default /var/cache/sensi-edge-arm)
#   SENSI_EDGE_ARM_HOST_PYTHON  host python whose pip downloads the wheels and whose installed onnxruntime and
#                               numpy versions are pinned, so the emulated run uses the versions that computed
#                               the bundle's expected outputs (default python3)
#   SENSI_EDGE_ARM_PIP_SPECS    wheel specs instead of those pins, e.g. "onnxruntime==1.32.0 numpy==2.4.6"
#   SENSI_EDGE_ARM_EXTRA_PIP    extra wheel specs to add to the emulated environment
#   SENSI_EDGE_ARM_MIRROR       Debian mirror URI; by default read from this machine's apt configuration
#   SENSI_EDGE_ARM_CPU          qemu CPU model (default cortex-a72, what /proc/cpuinfo describes)
# Guest environment: env -i, then PATH, HOME=/root, LANG=C.UTF-8, PYTHONPATH, PYTHONDONTWRITEBYTECODE=1 (runs never
# write into the cache; .pyc files are compiled once while building it), ORT_DISABLE_TELEMETRY=1.
# Building the cache needs root (debootstrap, apt-get); running needs root or unprivileged user namespaces.
# No package-registry host is named here: apt sources and pip configuration of the machine are used.
set -euo pipefail
set -o errtrace

SUITE=bookworm
PYVER=3.11
WHEEL_PLATFORM=manylinux_2_28_aarch64
CACHE=${SENSI_EDGE_ARM_CACHE:-/var/cache/sensi-edge-arm}
ROOTFS=$CACHE/rootfs
HOSTPY=${SENSI_EDGE_ARM_HOST_PYTHON:-python3}
QEMU_CPU_MODEL=${SENSI_EDGE_ARM_CPU:-cortex-a72}
MARKER=.sensi-edge-complete
TMPW=

die() { echo "arm_setup: $*" >&2; exit 1; }
note() { echo "arm_setup: $*" >&2; }
cleanup() { if [[ -n $TMPW && -d $TMPW ]]; then rm -rf -- "$TMPW"; fi; }
trap cleanup EXIT
trap 'exit 143' TERM
trap 'exit 130' INT
# unexpected failures: one line, from the main shell only (a failing $(...) must not add a second one)
# shellcheck disable=SC2154  # _rc is assigned inside the trap string
trap '_rc=$?; if [[ $BASHPID == "$$" ]]; then die "command failed (line $LINENO, exit $_rc): $BASH_COMMAND"; else exit "$_rc"; fi' ERR

# ------------------------------------------------------------------ helpers
logged() {  # logged NAME CMD...: run CMD with its output in $CACHE/logs/NAME.log; one-line reason on failure
    local name=$1 log=$CACHE/logs/$1.log
    shift
    if ! "$@" >"$log" 2>&1; then
        die "$name failed: $(grep -v '^[[:space:]]*$' "$log" | tail -n 1 | cut -c1-300) (full log: $log)"
    fi
}

wheel_specs() {  # sets SPECS (no die inside $(...): the one-line reason must be the last line)
    if [[ -n ${SENSI_EDGE_ARM_PIP_SPECS:-} ]]; then
        SPECS=$(echo "$SENSI_EDGE_ARM_PIP_SPECS ${SENSI_EDGE_ARM_EXTRA_PIP:-}" | xargs)
        return
    fi
    command -v "$HOSTPY" >/dev/null 2>&1 || die "host python '$HOSTPY' not found (set SENSI_EDGE_ARM_HOST_PYTHON)"
    local pins
    pins=$("$HOSTPY" -c '
from importlib import metadata
out = []
for name in ("onnxruntime", "numpy"):
    try:
        out.append(f"{name}=={metadata.version(name)}")
    except metadata.PackageNotFoundError:
        out.append(name)
print(" ".join(out))') || die "host python '$HOSTPY' cannot report package versions"
    SPECS=$(echo "$pins ${SENSI_EDGE_ARM_EXTRA_PIP:-}" | xargs)  # xargs: squeeze blanks
}

SPECS=
PYLIB=
init_specs() {  # SPECS and the guest folder of their unpacked wheels, /opt/pylib-<hash of SPECS>
    wheel_specs
    PYLIB=/opt/pylib-$(printf '%s' "$SPECS" | sha256sum | cut -c1-12)
}

rootfs_ready() { [[ -f $ROOTFS/$MARKER && -x $ROOTFS/usr/bin/python$PYVER && -x $ROOTFS/usr/bin/qemu-aarch64-static ]]; }
pylib_ready() { [[ -f $ROOTFS$PYLIB/$MARKER ]]; }

debian_mirror() {  # sets MIRROR: the Debian URI of suite $SUITE from this machine's apt configuration
    local uri=${SENSI_EDGE_ARM_MIRROR:-}
    if [[ -z $uri ]] && command -v apt-get >/dev/null 2>&1; then
        # shellcheck disable=SC2016  # $(...) are apt's format fields, not shell
        uri=$(apt-get indextargets --format '$(RELEASE) $(SITE)' 2>/dev/null |
              awk -v s="$SUITE" '$1 == s { print $2; exit }') || uri=""
    fi
    if [[ -z $uri ]]; then  # deb822 *.sources: a paragraph with Types: deb and our suite
        uri=$(cat /etc/apt/sources.list.d/*.sources 2>/dev/null | awk -v s="$SUITE" '
            function flush() { if (types ~ /(^| )deb( |$)/ && enabled != "no" && (" " suites " ") ~ (" " s " ") && uris != "" && found == "") { split(uris, u, " "); found = u[1] } types = uris = suites = ""; enabled = "yes" }
            /^[ \t]*#/ { next }
            /^[ \t]*$/ { flush(); next }
            { k = $0; sub(/:.*/, "", k); k = tolower(k); v = $0; sub(/^[^:]*:[ \t]*/, "", v)
              if (k == "types") types = v; else if (k == "uris") uris = v; else if (k == "suites") suites = v; else if (k == "enabled") enabled = tolower(v) }
            END { flush(); if (found != "") print found }') || uri=""
    fi
    if [[ -z $uri ]]; then  # one-line format: deb [options] URI SUITE COMPONENTS...
        uri=$(cat /etc/apt/sources.list /etc/apt/sources.list.d/*.list 2>/dev/null | awk -v s="$SUITE" '
            $1 == "deb" { i = 2; if ($i ~ /^\[/) { while (i <= NF && $i !~ /\]$/) i++; i++ }
                          if ($(i + 1) == s) { print $i; exit } }') || uri=""
    fi
    [[ -n $uri ]] || die "no apt source for Debian '$SUITE' in this machine's apt configuration (set SENSI_EDGE_ARM_MIRROR to a Debian mirror URI)"
    MIRROR=${uri%/}
}

apt_download() {  # apt_download DIR PKG...: .debs of this host's architecture, with one apt-get update if needed
    local dir=$1
    shift
    command -v apt-get >/dev/null 2>&1 || die "apt-get not found; install qemu-user-static and debootstrap by hand"
    if ! (cd "$dir" && apt-get -q -o APT::Sandbox::User=root download "$@") >"$CACHE/logs/apt-download.log" 2>&1; then
        logged apt-update apt-get -q update
        # shellcheck disable=SC2016  # expanded by the inner bash
        logged apt-download bash -c 'cd "$1" && shift && apt-get -q -o APT::Sandbox::User=root download "$@"' _ "$dir" "$@"
    fi
}

cpuinfo() {  # a Raspberry Pi 4 (Cortex-A72) style /proc/cpuinfo for $1 processors, naming the emulation
    local i
    for ((i = 0; i < $1; i++)); do
        printf 'processor\t: %d\nBogoMIPS\t: 108.00\nFeatures\t: fp asimd evtstrm crc32 cpuid\n' "$i"
        printf 'CPU implementer\t: 0x41\nCPU architecture: 8\nCPU variant\t: 0x0\nCPU part\t: 0xd08\nCPU revision\t: 3\n\n'
    done
    printf 'Hardware\t: qemu-aarch64 user emulation (Cortex-A72 cpuinfo, sensi-edge CI)\n'
    printf 'Model\t\t: emulated Raspberry Pi 4 class aarch64, timings not representative\n'
}

# ------------------------------------------------------------------ cache build
build_rootfs() {
    [[ $(id -u) == 0 ]] || die "building the cache at $CACHE needs root (debootstrap); run this script as root once"
    local keyring part=$CACHE/rootfs.partial qemu debootstrap_bin deb p n MIRROR=
    debian_mirror
    keyring=/usr/share/keyrings/debian-archive-keyring.gpg
    [[ -f $keyring ]] || die "missing $keyring (apt package debian-archive-keyring) to verify the arm64 packages"
    note "building arm64 $SUITE rootfs from $MIRROR (first time only, a few minutes)"
    rm -rf -- "$part"
    mkdir -p "$TMPW/dl" "$TMPW/tools"
    qemu=$(command -v qemu-aarch64-static || true)
    debootstrap_bin=$(command -v debootstrap || true)
    local want=()
    [[ -n $qemu ]] || want+=(qemu-user-static)
    [[ -n $debootstrap_bin ]] || want+=(debootstrap)
    if ((${#want[@]})); then
        apt_download "$TMPW/dl" "${want[@]}"
        for deb in "$TMPW"/dl/*.deb; do
            case $(basename "$deb") in
                qemu-user-static_*) dpkg-deb --fsys-tarfile "$deb" | tar -C "$TMPW/tools" -xf - ./usr/bin/qemu-aarch64-static ;;
                *) dpkg-deb -x "$deb" "$TMPW/tools" ;;
            esac
        done
        [[ -n $qemu ]] || qemu=$TMPW/tools/usr/bin/qemu-aarch64-static
        if [[ -z $debootstrap_bin ]]; then
            debootstrap_bin=$TMPW/tools/usr/sbin/debootstrap
            export DEBOOTSTRAP_DIR=$TMPW/tools/usr/share/debootstrap
        fi
    fi
    [[ -x $qemu ]] || die "qemu-aarch64-static not found after unpacking qemu-user-static"
    # first stage only: download + unpack the essential set; no arm64 code runs
    logged debootstrap "$debootstrap_bin" --foreign --arch=arm64 --variant=minbase --include="python$PYVER" \
        --keyring="$keyring" "$SUITE" "$part" "$MIRROR"
    # the second stage would configure packages by running arm64 code; unpacking the rest is enough here
    n=0
    for p in $(cat "$part/debootstrap/base" "$part/debootstrap/required" 2>/dev/null | tr ' ' '\n' | sort -u); do
        for deb in "$part"/var/cache/apt/archives/"${p}"_*.deb; do
            [[ -f $deb ]] || continue
            dpkg-deb --fsys-tarfile "$deb" | tar -C "$part" --keep-directory-symlink -xf - || die "cannot unpack $(basename "$deb")"
            n=$((n + 1))
        done
    done
    [[ -x $part/usr/bin/python$PYVER ]] || die "python$PYVER missing from the arm64 rootfs after unpacking $n packages"
    rm -rf -- "$part"/var/cache/apt/archives/*.deb "$part/debootstrap" "$part"/usr/share/{doc,man,info}
    install -m 0755 "$qemu" "$part/usr/bin/qemu-aarch64-static"
    # debootstrap links /proc to the host's in containers: the guest must see an aarch64 cpuinfo instead
    rm -rf -- "$part/proc" "$part/sys"
    local cpus
    cpus=$(nproc 2>/dev/null || echo 1)
    mkdir -p "$part/proc" "$part/sys/devices/system/cpu"
    cpuinfo "$cpus" >"$part/proc/cpuinfo"
    for p in present possible online; do echo "0-$((cpus - 1))" >"$part/sys/devices/system/cpu/$p"; done
    mkdir -p "$part/work"
    chmod 1777 "$part/tmp" "$part/work"
    date -u +%FT%TZ >"$part/$MARKER"
    rm -rf -- "$ROOTFS"
    mv -- "$part" "$ROOTFS"
}

build_pylib() {
    [[ $(id -u) == 0 ]] || die "building the cache at $CACHE needs root; run this script as root once"
    local part=$ROOTFS$PYLIB.partial wheels=$TMPW/wheels
    command -v "$HOSTPY" >/dev/null 2>&1 || die "host python '$HOSTPY' not found (set SENSI_EDGE_ARM_HOST_PYTHON)"
    "$HOSTPY" -m pip --version >/dev/null 2>&1 || die "host python '$HOSTPY' has no pip (set SENSI_EDGE_ARM_HOST_PYTHON)"
    note "downloading aarch64 wheels: $SPECS"
    rm -rf -- "$part" "$wheels"
    mkdir -p "$part" "$wheels"
    local specs
    read -r -a specs <<<"$SPECS"
    logged pip-download "$HOSTPY" -m pip download --disable-pip-version-check --no-input --dest "$wheels" \
        --platform "$WHEEL_PLATFORM" --python-version "$PYVER" --implementation cp --only-binary=:all: "${specs[@]}"
    logged unpack-wheels "$HOSTPY" - "$part" "$wheels" <<'EOF'
import shutil, sys, zipfile
from pathlib import Path

dest, wheels = Path(sys.argv[1]), sorted(Path(sys.argv[2]).glob("*.whl"))
if not wheels:
    sys.exit("pip downloaded no wheels")
for whl in wheels:
    with zipfile.ZipFile(whl) as z:
        z.extractall(dest)
    print("unpacked", whl.name)
for data in dest.glob("*.data"):  # a wheel's purelib/platlib scheme folders belong on the path itself
    for scheme in ("purelib", "platlib"):
        if (data / scheme).is_dir():
            shutil.copytree(data / scheme, dest, dirs_exist_ok=True)
    shutil.rmtree(data)
EOF
    printf '%s\n' "$SPECS" >"$part/.specs"
    # bytecode once here (runs do not write any): saves about a second of emulated compiling per run
    guest_run / "$PYLIB.partial" /usr/bin/python$PYVER -m compileall -q -j0 -s "$PYLIB.partial" -p "$PYLIB" \
        "/usr/lib/python$PYVER" "$PYLIB.partial" >"$CACHE/logs/compileall.log" 2>&1 ||
        note "compileall reported problems (see $CACHE/logs/compileall.log); continuing without some .pyc files"
    # smoke test under the emulator before the marker: the unpacked environment must import and run
    if ! guest_run / "$PYLIB.partial" /usr/bin/python$PYVER -c \
        'import numpy, onnxruntime, platform; assert platform.machine() == "aarch64"; print("aarch64 ok", onnxruntime.__version__, numpy.__version__)' \
        >"$CACHE/logs/smoke.log" 2>&1; then
        die "emulated import of onnxruntime/numpy failed: $(grep -v '^[[:space:]]*$' "$CACHE/logs/smoke.log" | tail -n 1 | cut -c1-300) (full log: $CACHE/logs/smoke.log)"
    fi
    date -u +%FT%TZ >"$part/$MARKER"
    rm -rf -- "$ROOTFS$PYLIB"
    mv -- "$part" "$ROOTFS$PYLIB"
}

prepare() {
    init_specs
    mkdir -p "$CACHE" 2>/dev/null || die "cannot create cache folder $CACHE (set SENSI_EDGE_ARM_CACHE)"
    if [[ ! -e $CACHE/.lock ]]; then : >"$CACHE/.lock" || die "cannot write $CACHE/.lock"; fi
    exec 9<"$CACHE/.lock"
    flock -w 3600 9 || die "timed out waiting for another $0 holding $CACHE/.lock"
    if rootfs_ready && pylib_ready; then
        exec 9<&-
        probe_launcher
        return 0
    fi
    [[ $(id -u) == 0 ]] || die "cache at $CACHE is not ready for $SPECS; building it needs root: run $0 as root once"
    mkdir -p "$CACHE/logs"
    rm -rf -- "$CACHE"/tmp.*  # left by a killed build; the lock says no build is running now
    TMPW=$(mktemp -d "$CACHE/tmp.XXXXXX")
    rootfs_ready || build_rootfs
    pylib_ready || build_pylib
    rm -rf -- "$TMPW"
    TMPW=
    probe_launcher
    note "cache ready at $CACHE ($(du -sh "$CACHE" 2>/dev/null | cut -f1)): python$PYVER, $SPECS"
    exec 9<&-
}

# ------------------------------------------------------------------ running in the emulated rootfs
launcher() {  # sets LAUNCHER: enter the rootfs at guest folder $1 (chroot as root, else a user namespace)
    LAUNCHER=(unshare "--root=$ROOTFS" "--wd=$1")
    if [[ $(id -u) != 0 ]]; then LAUNCHER=(unshare --map-root-user "--root=$ROOTFS" "--wd=$1"); fi
}

probe_launcher() {  # a cache restored elsewhere may sit where chroot / user namespaces are not allowed
    local LAUNCHER out
    launcher /
    if ! out=$("${LAUNCHER[@]}" /usr/bin/qemu-aarch64-static --version 2>&1); then
        die "cannot enter the rootfs with ${LAUNCHER[*]}: $(printf '%s\n' "$out" | grep -v '^[[:space:]]*$' | tail -n 1)"
    fi
}

guest_run() {  # guest_run GUEST_WD GUEST_PYLIB PROGRAM ARGS...: exit status of the emulated program
    local pylib=$2 LAUNCHER
    launcher "$1"
    shift 2
    env -i PATH=/usr/local/bin:/usr/bin:/bin HOME=/root LANG=C.UTF-8 PYTHONPATH="$pylib" PYTHONDONTWRITEBYTECODE=1 \
        PYTHONUNBUFFERED=1 ORT_DISABLE_TELEMETRY=1 "${LAUNCHER[@]}" /usr/bin/qemu-aarch64-static -cpu "$QEMU_CPU_MODEL" "$@"
}

run_bundle() {
    local bundle=${1:-}
    [[ -n $bundle ]] || die "usage: $0 run BUNDLE_DIR [run.py args...]"
    shift
    [[ -f $bundle/run.py && -f $bundle/manifest.json ]] || die "$bundle is not a sensi-edge bundle (no run.py/manifest.json)"
    bundle=$(cd "$bundle" && pwd)
    prepare
    exec 8<"$CACHE/.lock"
    flock -s 8  # a concurrent prepare must not rebuild what this run uses
    find "$ROOTFS/work" -mindepth 1 -maxdepth 1 -mmin +1440 -exec rm -rf -- {} + 2>/dev/null || true  # killed runs
    TMPW=$(mktemp -d "$ROOTFS/work/bundle.XXXXXX")
    cp -a -- "$bundle/." "$TMPW/"
    local rc=0
    trap - ERR
    guest_run "/work/${TMPW##*/}" "$PYLIB" /usr/bin/python$PYVER run.py "$@" || rc=$?
    # copy back what the run wrote or changed (report.json, relative --out files)
    (cd "$TMPW" && find . -type f -print0) | while IFS= read -r -d '' f; do
        if [[ ! -f $bundle/$f ]] || ! cmp -s -- "$TMPW/$f" "$bundle/$f"; then
            mkdir -p -- "$(dirname -- "$bundle/$f")"
            cp -- "$TMPW/$f" "$bundle/$f"
        fi
    done
    return "$rc"
}

run_python() {
    prepare
    exec 8<"$CACHE/.lock"
    flock -s 8
    trap - ERR
    local rc=0
    guest_run / "$PYLIB" /usr/bin/python$PYVER "$@" || rc=$?
    return "$rc"
}

case ${1:-prepare} in
    prepare) prepare ;;
    run) shift; run_bundle "$@" ;;
    python) shift; run_python "$@" ;;
    -h | --help | help) sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//' ;;
    *) die "unknown command '$1' (prepare | run BUNDLE_DIR [ARGS...] | python [ARGS...])" ;;
esac
