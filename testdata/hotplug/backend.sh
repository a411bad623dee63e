#!/bin/sh
# Plays a device's backend (and its frontend) for the `xsio device` tests, with Xen's
# xenstore tools against XENSTORED_PATH (ours, written for the tests).
#
#   backend.sh MODE BACKEND_PATH FRONTEND_PATH
#
# It watches the backend's `state` and, on every event, reads it again:
#   close   1 (the add) -> writes InitWait (2); 5 (a removal) -> frontend 6, then backend
#           6, as blkfront and blkback (or QEMU) do
#   stuck   1 -> 2, but never answers a removal (a dead frontend, a stuck backend)
#   vanish  1 -> 2; 5 -> removes both directories (QEMU's clean exit)
# It runs until killed (the tests kill its process group).
set -u
mode=$1 be=$2 fe=$3

xenstore-watch "$be/state" | while read -r _event; do
    state=$(xenstore-read "$be/state" 2>/dev/null) || continue
    case "$mode:$state" in
    close:1 | stuck:1 | vanish:1)
        xenstore-write "$be/state" 2
        ;;
    close:5)
        xenstore-write "$fe/state" 6
        xenstore-write "$be/state" 6
        ;;
    vanish:5)
        xenstore-rm "$be"
        xenstore-rm "$fe"
        ;;
    esac
done
