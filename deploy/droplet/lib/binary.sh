#!/usr/bin/env bash
# hello-ctl's binary path: a release received, proved in a network of its own,
# handed to systemd (hello.socket holds the port, hello.service runs current/hello),
# rolled back, pruned.
# Sourced by deploy/droplet/hello-ctl (which sets -euo pipefail, parses the options
# and sets base, releases, env_file, timeout, lock_wait, command and here), never run.
# shellcheck disable=SC2154 # those variables are hello-ctl's

release_dir() { # REL -> its folder, or fail: a name matched whole resolves inside releases/
    [[ $1 =~ $REL_PATTERN ]] || fail "release '$1' is not <version>-<12 hex digits of the commit>"
    echo "$releases/$1"
}

receive() { # REL SHA256: stdin -> releases/REL/hello, checked, or nothing at all
    local rel=$1 sum=$2 dir tmp info
    dir=$(release_dir "$rel")
    [[ $sum =~ ^[0-9a-f]{64}$ ]] || fail "'$sum' is not a SHA-256"
    # Before a byte is stored: the sum the upload must then have, under the native
    # build's name or under this platform's release name.
    check_signed "$sum" hello "hello-${rel%-*}-$(this_platform)"
    tmp=$(mktemp "$releases/.incoming.XXXXXX")
    cat >"$tmp" || { rm -f "$tmp"; fail "could not store the upload in $releases ($(df -h --output=avail "$releases" | tail -n 1 | tr -d ' ') free); nothing was installed, the running release is untouched"; }
    [[ $(sha256sum <"$tmp" | cut -d' ' -f1) == "$sum" ]] \
        || { rm -f "$tmp"; fail "checksum of the uploaded binary does not match $sum (cut or damaged); nothing was installed"; }
    # Read from its header, never run: with qemu's binfmt on the host a binary of
    # another machine would run (slowly), and would serve. A file that is no ELF at
    # all cannot say it is the release either: `hello version` below refuses it.
    local machine
    machine=$(machine_of "$tmp")
    [[ -z $machine || $machine == "$(this_platform)" ]] \
        || { rm -f "$tmp"; fail "the upload is $machine, and this host is $(this_platform) ($(uname -m)): deploy hello-${rel%-*}-$(this_platform); nothing was installed"; }
    chmod 0755 "$tmp"
    # A release that served keeps its bytes: a rebuild or an impostor under its name
    # would otherwise replace what current or previous runs before its proof.
    if [[ -e $dir/hello ]] && ! cmp -s "$tmp" "$dir/hello" \
        && [[ -e $dir/served || $(link_of current) == "releases/$rel" || $(link_of previous) == "releases/$rel" ]]; then
        rm -f "$tmp"
        fail "$rel is on this host already, with other bytes, and has served: a release is never replaced (build it as another version); nothing was installed"
    fi
    info=$(heard sandbox -p RuntimeMaxSec=30 "$tmp" version --json) || info="'hello version' failed: $info"
    [[ $info == *"\"commit\": \"${rel: -12}"* && $info == *"\"version\": \"${rel%-*}\""* ]] \
        || { rm -f "$tmp"; fail "the upload says it is $info, not $rel; nothing was installed"; }
    mkdir -p "$dir"
    mv -f "$tmp" "$dir/hello"
    say "received $rel"
}

install_units() { # port: the units as shipped, plus drop-ins for <base> and the port
    local changed=0 socket=0 was
    was=$(cat "$units/hello.socket.d/port.conf" 2>/dev/null || true)
    put "$units/hello.service" <"$here/hello.service" && changed=1
    put "$units/hello.socket" <"$here/hello.socket" && socket=1
    printf '[Service]\nExecStart=\nExecStart=%s/current/hello serve\nEnvironmentFile=\nEnvironmentFile=-%s\n' \
        "$base" "$env_file" | put "$units/hello.service.d/base.conf" && changed=1
    printf '[Socket]\nListenStream=\nListenStream=%s\n' "$1" | put "$units/hello.socket.d/port.conf" && socket=1
    ((changed || socket)) || return 0
    systemctl daemon-reload
    systemctl enable --quiet hello.socket hello.service
    if ((socket)); then
        systemctl stop hello.service hello.socket
        systemctl start hello.socket || listen_back "$1" "$was"
    fi
}
listen_back() { # port drop-in: hello.socket could not take the port; the one before serves again
    local current
    current=$(link_of current)
    if [[ -n $2 ]]; then printf '%s\n' "$2" | put "$units/hello.socket.d/port.conf" || true; else rm -f "$units/hello.socket.d/port.conf"; fi
    rm -f "$base/deploying" # nothing was switched
    systemctl daemon-reload
    systemctl start hello.socket && { [[ -z $current ]] || systemctl start hello.service; } || true
    fail "hello.socket could not listen on port $1 (in use?); back on port $(port_of ''), serving ${current:-nothing}"
}
restore() { # current previous [port]: the links and the port back, and the release they name running
    set_link current "$1"
    set_link previous "$2"
    [[ ! ${3:-} =~ ^[0-9]+$ ]] || install_units "$3"
    rm -f "$base/deploying"
    [[ -n $1 ]] || { systemctl stop hello.service; return 0; }
    # A release that failed once systemd started it crash-looped: the start limit
    # (hello.service) or the trigger limit (hello.socket) may refuse the old one now.
    systemctl reset-failed hello.service hello.socket 2>/dev/null || true
    { systemctl start hello.socket && systemctl restart hello.service; } \
        || fail "switched back to $1, which did not start either ($(systemctl is-active hello.socket hello.service | tr '\n' ' ')): journalctl -u hello.service"
}

activate() { # REL [PORT]
    local rel=$1 port dir commit old prev why
    dir=$(release_dir "$rel")
    [[ -x $dir/hello ]] || fail "release '$rel' is not in $releases (have: $(find "$releases" -mindepth 1 -maxdepth 1 -type d -printf '%f '))"
    port=$(port_of "${2:-}")
    commit=${rel: -12}
    check_env sandbox "$dir/hello"
    say "proving $rel in a network of its own"
    why=$(heard sandbox -p PrivateNetwork=yes -p EnvironmentFile=-"$env_file" \
        /bin/sh -s "$dir/hello" "$commit" "$timeout" <"$here/preflight") \
        || fail "$rel failed its health check in isolation (${why:-no output}); nothing changed, the old release kept serving"
    old=$(link_of current) prev=$(link_of previous)
    echo "$old $prev $(port_of '')" >"$base/deploying"
    install_units "$port"
    set_link current "releases/$rel"
    [[ -n $old && $old != "releases/$rel" ]] && set_link previous "$old"
    # A deploy's start is the operator's, not a crash loop's: the start limit
    # (hello.service: 5 in 10 s) counts every start, so quick deploys and rollbacks
    # would be refused by it ("start of the service was attempted too often").
    systemctl reset-failed hello.service 2>/dev/null || true
    systemctl restart hello.service || true # a start that fails at once: the gate below decides, and goes back
    local deadline=$((SECONDS + timeout))
    until sandbox -p RuntimeMaxSec=10 "$dir/hello" healthcheck --url "http://127.0.0.1:$port/healthz" \
        --commit "$commit" --timeout 1s >/dev/null 2>&1; do
        if ((SECONDS >= deadline)); then
            restore "$old" "$prev" "$(port_of '')"
            fail "$rel did not answer as commit $commit on port $port within ${timeout}s ($(systemctl is-active hello.service || true)); switched back to ${old:-nothing}"
        fi
        sleep 0.2
    done
    touch "$dir/served"
    echo "$port" >"$base/port"
    rm -f "$base/deploying"
    say "serving $rel on port $port"
}

rollback_release() { # [REL]
    local target=${1:-}
    target=${target:-$(basename "$(link_of previous)")}
    [[ -n $target && $target != . ]] || fail "no previous release in $base to roll back to"
    activate "$target"
}

prune_releases() { # KEEP: newest first by when they last served; a release that never served goes
    local keep=$1 count=0 rel current previous
    current=$(basename "$(link_of current)") previous=$(basename "$(link_of previous)")
    rm -f "$releases"/.incoming.* # the lock is ours: any upload left is abandoned
    while read -r rel; do
        if [[ -f $releases/$rel/served ]] && ((++count <= keep)); then continue; fi
        [[ $rel == "$current" || $rel == "$previous" ]] && continue
        say "pruning release $rel"
        rm -rf "${releases:?}/$rel"
    done < <(find "$releases" -mindepth 2 -maxdepth 2 -name served -printf '%T@ %h\n' | sort -rn | sed 's|.*/||'
        find "$releases" -mindepth 1 -maxdepth 1 -type d ! -exec test -e '{}/served' ';' -printf '%f\n')
}
