#!/usr/bin/env bash
# hello-ctl's shared steps: messages, <base> and its lock, recovery from a killed
# deploy, hostile output heard as one line, the sandbox release code runs in, ports,
# links, the env file's check.
# Sourced by deploy/droplet/hello-ctl (which sets -euo pipefail, parses the options
# and sets base, releases, env_file, timeout, lock_wait, command and here), never run.
# shellcheck disable=SC2154 # those variables are hello-ctl's

say() { printf 'hello-ctl: %s\n' "$*" >&2; }
fail() { printf 'hello-ctl: FAILED: %s\n' "$*" >&2; exit 1; }
usage() { sed -n '2,/^set -euo/{/^set -euo/d;s/^# \{0,1\}//;p}' "$0" >&2; exit 2; }

check_base() { # no one but root can write <base> or swap a folder above it
    local dir=$base info
    while [[ $dir != / ]]; do
        if info=$(stat -c '%u %a %F' "$dir" 2>/dev/null); then
            [[ $info =~ ^0\ [0-7]*[0145][0145]\ directory$ ]] \
                || fail "--base: $dir is $info (owner uid, mode, type): it must be a root-owned folder no one else can write"
        fi
        dir=$(dirname "$dir")
    done
    mkdir -p "$base" "$releases"
}

lock() { # one deploy at a time; the kernel drops the lock when the holder dies
    exec 9>>"$base/lock"
    if ! flock -w "$lock_wait" 9; then
        fail "another deploy holds $base/lock ($(cat "$base/lock.holder" 2>/dev/null || echo unknown)); retry, or pass --lock-wait"
    fi
    printf 'pid %s, %s, since %s\n' "$$" "$command" "$(date -u +%FT%TZ)" >"$base/lock.holder"
    recover
}

# A deploy killed between its switch and its verdict left `deploying` (the links and
# the port as they were, written by root): put them back, so previous names a release
# that served and the old port serves.
recover() {
    local old='' prev='' port=''
    [[ -f $base/deploying ]] || return 0
    read -r old prev port <"$base/deploying" || true
    say "an earlier deploy was interrupted: current -> ${old:-nothing} again"
    restore "$old" "$prev" "$port"
}

heard() { # COMMAND...: its output as one line of at most 2000 printable bytes (releases are hostile)
    local out status=0
    out=$("$@" 2>&1 | head -c 2000 | LC_ALL=C tr -c '[:print:]' ' ') || status=$?
    printf '%s' "${out%"${out##*[! ]}"}"
    return "$status"
}

sandbox() { # [systemd-run -p ...] COMMAND...: as a throw-away user with its own /tmp
    systemd-run --quiet --wait --pipe --collect --service-type=exec -p DynamicUser=yes \
        -p PrivateTmp=yes -p ProtectSystem=strict -p ProtectHome=yes -p NoNewPrivileges=yes \
        -p PrivateDevices=yes -p CapabilityBoundingSet= -p RuntimeMaxSec="$((timeout + 10))" "$@"
}

port_of() { # the port given, else the saved one, else 8080 (saved once a release serves)
    local port=${1:-$(cat "$base/port" 2>/dev/null || true)}
    port=${port:-8080}
    [[ $port =~ ^[1-9][0-9]{0,4}$ && $port -le 65535 ]] || fail "port '$port' is not a port number (1-65535)"
    echo "$port"
}

set_link() { # name target: atomic (a temporary link renamed over the old one)
    [[ -n $2 ]] || { rm -f "$base/$1"; return 0; }
    ln -sfn "$2" "$base/.$1.new" && mv -T "$base/.$1.new" "$base/$1"
}
link_of() { readlink "$base/$1" 2>/dev/null || true; }

root_only() { # PATH: root's, writable by no one else, not a symlink
    [[ ! -L $1 && $(stat -c '%u %a' "$1" 2>/dev/null) =~ ^0\ [0-7]*[0145][0145]$ ]]
}

check_env() { # ask the release's own hello whether hello.env means what it should
    local why
    [[ -f $env_file || -L $env_file ]] || return 0
    # systemd reads it again at every start: whoever else could write it would pass
    # the check, then add what the check refuses.
    root_only "$env_file" \
        || fail "$env_file must be a root-owned file no one else can write, not a symlink ($(stat -c '%U, mode %a, %F' "$env_file")); nothing changed"
    why=$(heard "$@" check-env - <"$env_file") || fail "$env_file: ${why:+${why#hello: stdin }}${why:-no answer from hello check-env}; nothing changed"
}

put() { # file: stdin written there when it differs; 0 if it changed
    mkdir -p "$(dirname "$1")"
    cat >"$1.new"
    if cmp -s "$1.new" "$1"; then rm -f "$1.new"; return 1; fi
    mv -f "$1.new" "$1"
}
