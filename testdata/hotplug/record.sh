#!/bin/sh
# A hotplug script for the xsio-device tests (ours, written for them; not Xen's `block`).
#
# It does what a Linux hotplug script does at the interface libxl defines: it is run as
# `<script> add|remove` with `script`, `XENBUS_TYPE`, `XENBUS_PATH` (relative to the
# caller's /local/domain/<self>) and `XENBUS_BASE_PATH` in its environment, and it reports
# in the backend directory: `hotplug-status` (`connected`, or `error` with `hotplug-error`).
#
#   XSIO_HOTPLUG_RECORD  file to append one record per run to (argv, then the env above)
#   XSIO_HOTPLUG_MODE    ok (default): exit 0; fail: hotplug-error, exit 1; hang: sleep
#                        until killed
#
# `hotplug-status` is written with Xen's `xenstore-write` when it is on PATH (it honours
# XENSTORED_PATH, inherited from the toolstack); without it the script only records.
set -u

command=${1:-}
record=${XSIO_HOTPLUG_RECORD:-/dev/null}
{
    echo "argv: $0 $*"
    echo "script=${script:-}"
    echo "XENBUS_TYPE=${XENBUS_TYPE:-}"
    echo "XENBUS_PATH=${XENBUS_PATH:-}"
    echo "XENBUS_BASE_PATH=${XENBUS_BASE_PATH:-}"
    echo "--"
} >>"$record"

status() {
    if command -v xenstore-write >/dev/null 2>&1 && [ -n "${XENBUS_PATH:-}" ]; then
        xenstore-write "$XENBUS_PATH/hotplug-status" "$1" >/dev/null 2>&1 || true
        if [ -n "${2:-}" ]; then
            xenstore-write "$XENBUS_PATH/hotplug-error" "$2" >/dev/null 2>&1 || true
        fi
    fi
}

case "${XSIO_HOTPLUG_MODE:-ok}" in
ok)
    if [ "$command" = add ]; then
        status connected
    fi
    exit 0
    ;;
fail)
    status error "xsio test script: $command failed on purpose"
    echo "xsio test script: $command failed on purpose" >&2
    exit 1
    ;;
hang)
    # exec: the kill reaches the sleeping process itself.
    exec sleep 3600
    ;;
*)
    echo "unknown XSIO_HOTPLUG_MODE" >&2
    exit 2
    ;;
esac
