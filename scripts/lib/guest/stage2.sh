#!/bin/sh
# objcg-shadow guest stage 2.  Runs chrooted into the host's root file system
# (read-only, with tmpfs /tmp /run) under /bin/sh, started by the initramfs /init.
#
# /run/osh/ctl/config.sh (written by the host runner for this run) defines
#   OSH_NONCE    marker nonce for this run
#   OSH_LOAD     1 = insmod the module before CMD
#   osh_insmod   function: insmod objcg_shadow.ko with the --params
#   exports of CI and --env variables
# /run/osh/ctl/cmd.sh runs CMD.
#
# Results go to $OSH_OUT: rc (CMD's exit status), status ("ok",
# "insmod failed" or "rmmod failed"), dmesg, tainted, kmemleak (if the
# kernel has it).

# shellcheck source=/dev/null
. /run/osh/ctl/config.sh

marker() {
    echo "@@OSH-$1 $OSH_NONCE${2:+ $2}@@"
}

# On a kernel with kmemleak (the debug kernel), a scan after the module
# is gone: what it reports goes to $OSH_OUT/kmemleak for the host to judge.
kmemleak_scan() {
    k=/sys/kernel/debug/kmemleak
    [ -w "$k" ] || return 0
    # twice, with kmemleak's minimum object age (5 s) between: a leak is
    # reported once nothing has referenced it in a whole scan
    echo scan > "$k" 2>/dev/null
    sleep 6
    echo scan > "$k" 2>/dev/null
    cat "$k" > "$OSH_OUT/kmemleak" 2>&1
}

finish() {
    kmemleak_scan
    echo "$1" > "$OSH_OUT/status"
    dmesg > "$OSH_OUT/dmesg" 2>&1
    cat /proc/sys/kernel/tainted > "$OSH_OUT/tainted" 2>/dev/null
    sync
    marker STATUS "$1"
}

cd "$OSH_REPO" || { finish "no repo"; exit 1; }
unset OLDPWD

# Show kernel warnings (KERN_WARNING) on the console from now on, so that a
# WARN's "WARNING:" line and backtrace are visible before panic_on_warn hits,
# and so are insmod's complaints (e.g. unknown module parameters).
dmesg -n 5 2>/dev/null

if [ "$OSH_LOAD" = 1 ]; then
    if ! osh_insmod; then
        echo "objcg-shadow guest: insmod $OSH_MODULE failed; not running CMD" >&2
        finish "insmod failed"
        exit 1
    fi
fi

marker CMD-BEGIN
/bin/sh /run/osh/ctl/cmd.sh < /dev/null
rc=$?
echo "$rc" > "$OSH_OUT/rc"
sync
marker CMD-END "rc=$rc"

status=ok
if grep -q '^objcg_shadow ' /proc/modules; then
    if ! rmmod objcg_shadow; then
        echo "objcg-shadow guest: rmmod objcg_shadow failed" >&2
        status="rmmod failed"
    fi
fi
finish "$status"
