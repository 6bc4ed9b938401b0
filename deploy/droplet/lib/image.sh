#!/usr/bin/env bash
# hello-ctl's image path: containers on the host network, handed over with
# SO_REUSEPORT, rolled back, pruned.
# Sourced by deploy/droplet/hello-ctl (which sets -euo pipefail, parses the options
# and sets base, releases, env_file, timeout, lock_wait, command and here), never run.
# shellcheck disable=SC2154 # those variables are hello-ctl's

# image/active and image/previous hold "CONTAINER ID COMMIT"; image/history the IDs
# that served, oldest first.
# Any process of the containers' uid could join their SO_REUSEPORT listener and take
# connections: a uid no account here has (not nobody), outside systemd's dynamic range.
uid=61000
confined=(--read-only --tmpfs /tmp:exec --user "$uid:$uid" --cap-drop ALL --security-opt no-new-privileges)
trial() { # ID ARGS...: the image once, offline, for at most --timeout seconds (it may never end)
    local name=hello-trial-$$-$RANDOM status=0
    timeout -k 5 "$timeout" docker run "${confined[@]}" --rm -i --network none --name "$name" "$@" || status=$?
    docker rm -f "$name" >/dev/null 2>&1 || true
    return "$status"
}

image() { # ID COMMIT [PORT]
    local id=$1 commit=$2 port info entry name old=() env_args
    [[ $id =~ ^sha256:[0-9a-f]{64}$ ]] || fail "'$id' is not an image ID (sha256:<64 hex>)"
    [[ $commit =~ ^[0-9a-f]{12,40}$ ]] || fail "'$commit' is not a commit"
    port=$(port_of "${3:-}")
    ! getent passwd "$uid" >/dev/null || fail "uid $uid is an account on this host ($(getent passwd "$uid" | cut -d: -f1)): it could join the containers' port; nothing changed"
    entry=$(docker image inspect -f '{{if .Config.Entrypoint}}{{index .Config.Entrypoint 0}}{{end}}' "$id" 2>/dev/null) \
        || fail "image $id is not on this host"
    [[ $entry =~ ^/[A-Za-z0-9._/-]+$ ]] || fail "image $id has no ENTRYPOINT like /hello"
    info=$(heard trial "$id" version --json </dev/null) || fail "'hello version' failed in $id (or ran past ${timeout}s): $info"
    [[ $info == *"\"commit\": \"$commit"* ]] || fail "image $id says it is $info, not commit $commit; nothing changed"
    check_env trial "$id"
    read -ra old <"$base/image/active" 2>/dev/null || true
    name=hello-${commit:0:12}-$(date -u +%Y%m%d%H%M%S) env_args=()
    [[ -f $env_file ]] && env_args=(--env-file "$env_file")
    docker run "${confined[@]}" --detach --name "$name" --restart unless-stopped --network host "${env_args[@]}" \
        -e "HELLO_PORT=$port" -e HELLO_REUSE_PORT=true --stop-timeout 3660 --label "org.hello.base=$base" "$id" >/dev/null
    # The old one answers on the port too (maybe as the same commit): --own passes only
    # on an answer from a process of the new container.
    local deadline=$((SECONDS + timeout))
    until timeout -k 2 10 docker exec "$name" "$entry" healthcheck --port "$port" --own /healthz --timeout 1s >/dev/null 2>&1; do
        if ((SECONDS >= deadline)) || [[ $(docker inspect -f '{{.State.Running}}' "$name") != true ]]; then
            docker rm -f "$name" >/dev/null 2>&1 || true
            fail "container of $id did not answer on port $port itself within ${timeout}s; removed it${old[0]:+, ${old[0]} kept serving throughout}"
        fi
        sleep 0.2
    done
    if [[ -n ${old[0]:-} ]]; then
        sleep 0.5 # connections the kernel queued at the old listener land before it closes
        docker stop -t 3660 "${old[0]}" >/dev/null && docker rm "${old[0]}" >/dev/null
        echo "${old[*]}" >"$base/image/previous"
    fi
    local stale # left by a deploy killed while its container was on trial
    while read -r stale; do
        [[ $stale != "$name" ]] || continue
        docker stop -t 3660 "$stale" >/dev/null 2>&1 || true # it may hold requests: drained like the old
        docker rm -f "$stale" >/dev/null
    done < <(docker ps -a --filter "label=org.hello.base=$base" --format '{{.Names}}')
    echo "$name $id $commit" >"$base/image/active"
    echo "$port" >"$base/port"
    { grep -v "^$id " "$base/image/history" || true; echo "$id $commit"; } >"$base/image/.history" 2>/dev/null
    mv -f "$base/image/.history" "$base/image/history"
    say "serving $id (commit $commit) in container $name on port $port"
}

rollback_image() { # [ID]
    local target=${1:-} line
    [[ -z $target || $target =~ ^(sha256:)?[0-9a-f]{12,64}$ ]] || fail "'$target' is not an image ID"
    line=$(cut -d' ' -f2,3 "$base/image/previous" 2>/dev/null || true)
    [[ -z $target ]] || line=$(grep -m1 "^sha256:${target#sha256:}" "$base/image/history" || true)
    [[ -n $line ]] || fail "no ${target:-previous} image in $base to roll back to"
    image "${line% *}" "${line#* }" # ID COMMIT, as image() wrote them
}

prune_images() { # KEEP: images that served, oldest first; active and previous stay
    [[ -f $base/image/history ]] || return 0
    head -n "-$1" "$base/image/history" | while read -r id _; do
        grep -q " $id " "$base/image/active" "$base/image/previous" 2>/dev/null \
            || docker image rm "$id" >/dev/null 2>&1 || true
    done
}
